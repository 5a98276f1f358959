// Rainbow stripes; the key you press is shown in the console.
var ctx = document.getElementById("game").getContext("2d");
var colors = ["red", "orange", "yellow", "green", "blue", "purple"];
var stripe = 0;
var height = 40;

function drawStripe() {
  ctx.fillStyle = colors[stripe % colors.length];
  ctx.fillRect(0, stripe * height, 400, height);
  stripe = stripe + 1;
}

setInterval(drawStripe, 500);

document.addEventListener("keydown", function (event) {
  console.log("You pressed " + event.key);
});
