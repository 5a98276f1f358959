// A ball that bounces around the screen and changes colour on every bounce.
var canvas = document.getElementById("game");
var ctx = canvas.getContext("2d");
var x = 50;
var y = 80;
var dx = 3;
var dy = 2;
var radius = 15;
var bounces = 0;
var colors = ["tomato", "gold", "teal", "violet"];

setInterval(function () {
  x = x + dx;
  y = y + dy;
  if (x - radius < 0 || x + radius > canvas.width) {
    dx = -dx;
    bounces++;
  }
  if (y - radius < 0 || y + radius > canvas.height) {
    dy = -dy;
    bounces++;
  } else if (bounces > 20) {
    dx = dx * 1.001;
  }
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = colors[bounces % colors.length];
  ctx.beginPath();
  ctx.arc(x, y, radius, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillText("Bounces: " + bounces, 10, 20);
}, 16);
