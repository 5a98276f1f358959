// Move the square with WASD; press N to start a new round from the middle.
var canvas = document.getElementById("game");
var ctx = canvas.getContext("2d");
var x = 200;
var y = 200;
var steps = 0;

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillRect(x, y, 20, 20);
  ctx.fillText("Steps: " + steps, 10, 20);
}

function move(key) {
  if (key === "w") {
    y -= 10;
  } else if (key === "s") {
    y += 10;
  }
  if (key === "a") {
    x -= 10;
  } else if (key === "d") {
    x += 10;
  }
  steps++;
}

document.addEventListener("keydown", function (event) {
  if (event.key === "n") {
    x = 200;
    y = 200;
    steps = 0;
  } else {
    move(event.key);
  }
  draw();
});

draw();
