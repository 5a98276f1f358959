// Dodge the Meteors: arrow keys move the ship, Space restarts after a crash.
var canvas = document.getElementById("game");
var ctx = canvas.getContext("2d");
var ship = { x: 200, y: 360, size: 20, speed: 5 };
var meteors = [];
var score = 0;
var best = 0;
var playing = true;
var keys = {};

function spawnMeteor(level) {
  return { x: Math.random() * canvas.width, y: -20, speed: 2 + level * 0.5 };
}

function hits(meteor, target) {
  var dx = meteor.x - target.x;
  var dy = meteor.y - target.y;
  return Math.sqrt(dx * dx + dy * dy) < target.size;
}

function moveShip() {
  if (keys.ArrowLeft && ship.x > ship.size) {
    ship.x -= ship.speed;
  } else if (keys.ArrowRight && ship.x < canvas.width - ship.size) {
    ship.x += ship.speed;
  }
}

function update() {
  moveShip();
  if (Math.random() < 0.03) {
    meteors.push(spawnMeteor(Math.floor(score / 10)));
  }
  for (var i = meteors.length - 1; i >= 0; i--) {
    meteors[i].y += meteors[i].speed;
    if (hits(meteors[i], ship)) {
      playing = false;
      best = Math.max(best, score);
    } else if (meteors[i].y > canvas.height) {
      meteors.splice(i, 1);
      score++;
    }
  }
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "gray";
  meteors.forEach(function (m) {
    ctx.fillRect(m.x, m.y, 12, 12);
  });
  ctx.fillStyle = playing ? "cyan" : "red";
  ctx.fillRect(ship.x - ship.size / 2, ship.y, ship.size, ship.size);
  ctx.fillText("Score: " + score + "  Best: " + best, 10, 20);
}

function restart() {
  meteors = [];
  score = 0;
  playing = true;
  tick();
}

function tick() {
  if (playing) {
    update();
  }
  draw();
  if (playing) {
    requestAnimationFrame(tick);
  }
}

document.addEventListener("keydown", function (event) {
  keys[event.key] = true;
  if (event.key === " " && !playing) {
    restart();
  }
});
document.addEventListener("keyup", function (event) {
  keys[event.key] = false;
});

tick();
