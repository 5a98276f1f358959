// Move the cat with the arrow keys.
var ctx = document.getElementById("game").getContext("2d");
var cat = { x: 100, y: 100 };

function drawCat() {
  ctx.clearRect(0, 0, 400, 400);
  ctx.fillRect(cat.x, cat.y, 30, 30);
}

document.addEventListener("keydown", function (event) {
  if (event.key === "ArrowLeft") {
    cat.x -= 5;
  } else if (event.key === "ArrowRight") {
    cat.x += 5;
  }
  drawCat();
});

drawCat();
