// Whack-a-mole with the keyboard: keys 1-9 hit the holes. Press Enter to start or play again.
var ctx = document.getElementById("game").getContext("2d");
var mole = -1;
var score = 0;
var timeLeft = 0;
var moleTimer = null;

function holePosition(index) {
  return { x: 60 + (index % 3) * 120, y: 80 + Math.floor(index / 3) * 110 };
}

function drawBoard() {
  ctx.clearRect(0, 0, 400, 420);
  for (var i = 0; i < 9; i++) {
    var spot = holePosition(i);
    ctx.fillStyle = i === mole ? "sienna" : "black";
    ctx.fillRect(spot.x, spot.y, 60, 40);
  }
  ctx.fillStyle = "black";
  ctx.fillText("Score: " + score + "  Time: " + timeLeft, 10, 20);
}

function popMole() {
  mole = Math.floor(Math.random() * 9);
  timeLeft--;
  if (timeLeft <= 0) {
    clearInterval(moleTimer);
    mole = -1;
  }
  drawBoard();
}

function startGame() {
  score = 0;
  timeLeft = 30;
  moleTimer = setInterval(popMole, 900);
}

document.addEventListener("keydown", function (event) {
  if (event.key === "Enter" && timeLeft <= 0) {
    startGame();
  }
  var hole = Number(event.key) - 1;
  if (hole === mole && timeLeft > 0) {
    score += 10;
    mole = -1;
    drawBoard();
  }
});

drawBoard();
