// A traffic jam: a row of cars, every third one is a truck.
var ctx = document.getElementById("game").getContext("2d");
var carX = 10;
var count = 0;

while (carX < 380) {
  ctx.fillStyle = "crimson";
  if (count % 3 === 2) {
    ctx.fillStyle = "darkgreen";
  }
  ctx.fillRect(carX, 300, 50, 25);
  carX = carX + 60;
  count = count + 1;
}
