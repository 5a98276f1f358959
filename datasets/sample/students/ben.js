// Click the target as many times as you can in 20 seconds.
var canvas = document.getElementById("game");
var ctx = canvas.getContext("2d");
var score = 0;
var timeLeft = 20;
var target = { x: 200, y: 200, r: 25 };

function drawTarget() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.beginPath();
  ctx.arc(target.x, target.y, target.r, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillText("Score: " + score + "  Time: " + timeLeft, 10, 20);
}

function countDown() {
  timeLeft = timeLeft - 1;
  if (timeLeft <= 0) {
    clearInterval(timer);
    ctx.fillText("Time is up!", 160, 380);
  }
  drawTarget();
}

canvas.addEventListener("click", function (event) {
  var dx = event.offsetX - target.x;
  var dy = event.offsetY - target.y;
  if (timeLeft > 0 && dx * dx + dy * dy < target.r * target.r) {
    score = score + 1;
    target.x = 30 + Math.random() * 340;
    target.y = 30 + Math.random() * 340;
    drawTarget();
  }
});

var timer = setInterval(countDown, 1000);
drawTarget();
