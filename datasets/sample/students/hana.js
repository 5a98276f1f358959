// Snake (not finished yet)
var snake = [{ x: 10, y: 10 }];
var food = { x: 5, y: 5 };

function moveSnake() {
  snake.unshift({ x: snake[0].x + 1, y: snake[0].y });
  snake.pop();
}

function eatFood() {
  if (snake[0].x === food.x && snake[0].y === food.y) {
    snake.push({ x: food.x, y: food.y });
  }
}

console.log("Snake length: " + snake.length);
