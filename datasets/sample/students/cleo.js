// My picture: a house with the sun.
var ctx = document.getElementById("game").getContext("2d");
var houseX = 120;
var houseY = 200;
var sunColor = "yellow";

ctx.fillStyle = "brown";
ctx.fillRect(houseX, houseY, 160, 120);
ctx.fillStyle = "red";
ctx.beginPath();
ctx.moveTo(100, 200);
ctx.lineTo(200, 120);
ctx.lineTo(300, 200);
ctx.fill();
ctx.fillStyle = sunColor;
ctx.beginPath();
ctx.arc(340, 60, 30, 0, 2 * Math.PI);
ctx.fill();
