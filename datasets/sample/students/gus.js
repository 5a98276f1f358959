// Guess my number between 1 and 100.
var secret = Math.floor(Math.random() * 100) + 1;
var tries = 0;
var guess = 0;

while (guess !== secret) {
  guess = Number(prompt("Your guess (1-100)?"));
  tries = tries + 1;
  if (isNaN(guess) || guess < 1 || guess > 100) {
    alert("Please type a number from 1 to 100.");
  } else if (guess < secret) {
    alert("Higher!");
  } else if (guess > secret) {
    alert("Lower!");
  } else {
    alert("Right! You needed " + tries + " tries.");
  }
}
