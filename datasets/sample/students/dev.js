// TODO: make a game
console.log("Hello, game!");
document.getElementById("game").getContext("2d").fillRect(10, 10, 50, 50);
