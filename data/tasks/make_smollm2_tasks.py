"""Writes the two chat-style task files of the `smollm2` preset (run from the repo root):

    python data/tasks/make_smollm2_tasks.py

- smollm2_mul.jsonl: "What is a * b? Answer with just the number." for every a in 2..9, b in 2..19 (144
  problems, half of them held out by a seeded draw: "split" on each line). Rewarded. SmolLM2-135M-Instruct
  before RL, 24 random problems, 12 new tokens: greedy accuracy 0.375, mean reward at T=1 0.115.
- smollm2_add.jsonl: "What is a + b? ..." for 3000 seeded pairs of two-digit numbers (split by the prompt
  hash). Never rewarded. Before RL: greedy 0.21, mean reward at T=1 0.03.

The generated families' bare prompts ("12+34=") make the chat model ramble ("The number 12+34 is a classic
example of ..."), so the chat model gets a question and an instruction instead.
"""
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
TEMPLATE = "What is {a} {op} {b}? Answer with just the number."


def write(path: Path, pairs: list[tuple[int, int]], op: str, splits: list[str] | None = None) -> None:
    with path.open("w") as f:
        for i, (a, b) in enumerate(pairs):
            answer = a + b if op == "+" else a * b
            row = {"prompt": TEMPLATE.format(a=a, op=op, b=b), "answer": str(answer)}
            if splits is not None:
                row["split"] = splits[i]
            f.write(json.dumps(row) + "\n")


def main(folder: Path = HERE) -> None:
    """Write smollm2_add.jsonl and smollm2_mul.jsonl into `folder`."""
    rng = random.Random(0)
    add = rng.sample([(a, b) for a in range(10, 100) for b in range(10, 100)], 3000)
    write(folder / "smollm2_add.jsonl", add, "+")
    mul = [(a, b) for a in range(2, 10) for b in range(2, 20)]
    test = set(random.Random(1).sample(range(len(mul)), len(mul) // 2))
    write(folder / "smollm2_mul.jsonl", mul, "*", ["test" if i in test else "train" for i in range(len(mul))])


if __name__ == "__main__":
    main()
