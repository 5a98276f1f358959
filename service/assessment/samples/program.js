// Catch the Stars: move the basket with the arrow keys and catch falling stars.
// Three missed stars and the game is over; press R to play again.
var canvas = document.getElementById("game");
var ctx = canvas.getContext("2d");
var HIGH_SCORE_KEY = "catch-the-stars://high-score"; // a string with "//" inside

var basket = { x: 180, y: 370, width: 60, speed: 6 };
var stars = [];
var score = 0;
var lives = 3;
var keys = {};

/* Each star falls at its own speed.
   Faster stars appear as the score grows. */
function makeStar() {
  var speed = 2 + Math.random() * 2 + score / 10;
  return { x: Math.random() * (canvas.width - 10), y: -10, speed: speed };
}

function moveBasket() {
  if (keys.ArrowLeft && basket.x > 0) {
    basket.x -= basket.speed;
  } else if (keys.ArrowRight && basket.x + basket.width < canvas.width) {
    basket.x += basket.speed;
  }
}

function caught(star) {
  return star.y >= basket.y && star.x >= basket.x && star.x <= basket.x + basket.width;
}

function update() {
  moveBasket();
  if (Math.random() < 0.02) {
    stars.push(makeStar());
  }
  for (var i = stars.length - 1; i >= 0; i--) {
    stars[i].y += stars[i].speed;
    if (caught(stars[i])) {
      score++;
      stars.splice(i, 1);
    } else if (stars[i].y > canvas.height) {
      lives = lives - 1; // missed one
      stars.splice(i, 1);
    }
  }
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "gold";
  stars.forEach(function (star) {
    ctx.fillRect(star.x, star.y, 10, 10);
  });
  ctx.fillStyle = "saddlebrown";
  ctx.fillRect(basket.x, basket.y, basket.width, 20);
  ctx.fillStyle = "white";
  ctx.fillText(`Score: ${score}   Lives: ${lives}`, 10, 20);
}

function loop() {
  if (lives > 0) {
    update();
    draw();
    requestAnimationFrame(loop);
  } else {
    var best = Math.max(score, Number(localStorage.getItem(HIGH_SCORE_KEY)) || 0);
    localStorage.setItem(HIGH_SCORE_KEY, best);
    ctx.fillText(`Game over! /* ${score} stars */ Best: ${best}. Press R.`, 120, 200);
  }
}

document.addEventListener("keydown", function (event) {
  keys[event.key] = true;
  if (/^r$/i.test(event.key) && lives <= 0) { // restart
    score = 0;
    lives = 3;
    stars = [];
    loop();
  }
});
document.addEventListener("keyup", function (event) {
  keys[event.key] = false;
});

loop();
