// Paint with the mouse: drag to draw, the brush grows while you hold the mouse down.
var canvas = document.getElementById("game");
var ctx = canvas.getContext("2d");
var painting = false;
var size = 4;
var color = "navy";

function startPainting() {
  painting = true;
  size = 4;
}

function paint(event) {
  if (painting) {
    ctx.fillStyle = color;
    ctx.fillRect(event.offsetX, event.offsetY, size, size);
    size = Math.min(size + 0.2, 20);
  }
}

canvas.addEventListener("mousedown", startPainting);
canvas.addEventListener("mousemove", paint);
canvas.addEventListener("mouseup", function () {
  painting = false;
});
