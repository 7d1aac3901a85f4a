"""Write `questions.jsonl`: Challenger-like maths questions, many of them near duplicates.

A Challenger that drifts toward a mode repeats itself with small changes. So each question
is either fresh (a template family, one of its phrasings, random names, objects and
numbers) or, with probability `DUPLICATE_SHARE`, a copy of an earlier question's recipe
with one to three edits: new numbers, another phrasing of the same family, its context
sentences in another order, a filler opening ("Quick one:"), or a new name. Copies of
copies make chains and large groups, as mode collapse does. Seeded: the same seed and
count always give the same questions. The benchmark (`bench.clustering`) draws its
batches from `generate_questions` too.

    python -m tests.selfplay.data.make_questions   # rewrites questions.jsonl (320, seed 0)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

DUPLICATE_SHARE = 0.45
FIXTURE = Path(__file__).with_name("questions.jsonl")
FIXTURE_COUNT, FIXTURE_SEED = 320, 0

NAMES = (
    "Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Diego", "Sofia", "Ben",
    "Chloe", "Ivan", "Nadia", "Lucas", "Mei", "Sam", "Hannah", "Yusuf", "Elena", "Raj",
)  # fmt: skip
ITEMS = (
    "notebooks", "apples", "pencils", "tickets", "marbles", "stickers", "cupcakes", "books",
    "oranges", "shirts", "batteries", "plants", "candles", "coins", "cards", "bottles",
)  # fmt: skip
PLACES = ("school", "market", "library", "park", "museum", "bakery", "station", "farm")
OPENINGS = ("Quick one:", "Here is a puzzle.", "Try this:", "Question:", "Challenge:")

# A family: phrasings of one problem. Each phrasing is context sentences then the question;
# {n}, {m}, {o} are the name, item and place, {a}..{d} numbers.
FAMILIES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (
        ("{n} buys {a} {m} at ${b} each.", "{n} pays with a ${c} bill.",
         "How much change does {n} get?"),
        ("{n} pays for {a} {m} costing ${b} apiece with a ${c} bill.",
         "What change should {n} receive?"),
    ),
    (
        ("A train leaves the {o} at {a} km/h.",
         "A second train leaves {b} hours later at {c} km/h.",
         "After how many hours does the second train catch up?"),
        ("Two trains leave the {o}, the first at {a} km/h and the second {b} hours later at "
         "{c} km/h.",
         "When does the second train overtake the first?"),
    ),
    (
        ("A rectangle has a perimeter of {a} cm.", "Its length is {b} cm more than its width.",
         "What is the area of the rectangle in square centimetres?"),
        ("The perimeter of a rectangle is {a} cm and its length exceeds its width by {b} cm.",
         "Find its area."),
    ),
    (
        ("A bag holds {a} red and {b} blue marbles.", "Two marbles are drawn without replacement.",
         "What is the probability that both are red?"),
        ("From a bag of {a} red and {b} blue marbles, {n} draws two at random without replacement.",
         "Find the probability that both marbles drawn are red."),
    ),
    (
        ("What is the remainder when {a}^{b} is divided by {c}?",),
        ("Find {a} to the power {b} modulo {c}.",),
        ("Compute the remainder of {a} raised to the {b}th power after division by {c}.",),
    ),
    (
        ("{n} reads {a} pages on Monday and {b} more pages each day after that.",
         "How many pages has {n} read after {c} days?"),
        ("Starting with {a} pages on the first day, {n} reads {b} pages more every day.",
         "What is the total number of pages read in {c} days?"),
    ),
    (
        ("How many positive divisors does {a} have?",),
        ("Count the positive integers that divide {a} exactly.",),
    ),
    (
        ("The {o} sells {m} in packs of {a} and in packs of {b}.",
         "What is the largest number of {m} that cannot be bought exactly?"),
        ("{m} come in packs of {a} or {b} at the {o}.",
         "Find the greatest amount of {m} that no combination of packs gives."),
    ),
    (
        ("Solve for x: {a}x + {b} = {c}x - {d}.",),
        ("Find x if {a}x plus {b} equals {c}x minus {d}.",),
    ),
    (
        ("A tank fills in {a} hours with pipe A and in {b} hours with pipe B.",
         "How long does it take with both pipes open?"),
        ("Pipe A alone fills a tank in {a} hours and pipe B alone in {b} hours.",
         "If both run together, how many hours does filling take?"),
    ),
    (
        ("What is the sum of all integers from {a} to {b} that are divisible by {c}?",),
        ("Add up every multiple of {c} between {a} and {b} inclusive.",
         "What total do you get?"),
    ),
    (
        ("{n} invests ${a} at {b}% interest compounded yearly.",
         "How much is the investment worth after {c} years?"),
        ("An amount of ${a} grows at {b}% per year, compounded annually.",
         "What is its value after {c} years?"),
    ),
    (
        ("In how many ways can {a} students stand in a line if {n} must stand at one end?",),
        ("{a} students line up for a photo at the {o}, and {n} insists on being at an end.",
         "How many orderings are possible?"),
    ),
    (
        ("A triangle has sides {a}, {b} and {c}.", "What is its area?"),
        ("Use Heron's formula to find the area of a triangle with side lengths {a}, {b}, {c}.",),
    ),
    (
        ("The average of {a} numbers is {b}.",
         "When one number is removed the average becomes {c}.",
         "What number was removed?"),
        ("{a} numbers have a mean of {b}; removing one of them changes the mean to {c}.",
         "Which value was removed?"),
    ),
    (
        ("A clock shows {a}:{b}.", "What is the angle between the hour and minute hands?"),
        ("Find the smaller angle formed by the hands of a clock at {a}:{b}.",),
    ),
    (
        ("{n} has {a} {m}, gives a third of them to a friend and then buys {b} more.",
         "How many {m} does {n} have now?"),
        ("After giving away one third of {a} {m} and buying {b} new ones, how many {m} does "
         "{n} own?",),
    ),
    (
        ("What is the greatest common divisor of {a} and {b}?",),
        ("Find gcd({a}, {b}).",),
        ("Compute the highest common factor of {a} and {b}.",),
    ),
    (
        ("A recipe for {a} cupcakes needs {b} grams of flour.",
         "How much flour is needed for {c} cupcakes?"),
        ("If {b} g of flour makes {a} cupcakes at the {o}, how many grams make {c} cupcakes?",),
    ),
    (
        ("The sequence starts {a}, {b}, and each term is the sum of the two before it.",
         "What is the {c}th term?"),
        ("Each term of a sequence equals the sum of the previous two; the first terms are "
         "{a} and {b}.",
         "Find term number {c}."),
    ),
    (
        ("How many {c}-digit numbers have digits that add up to {a}?",),
        ("Count the {c}-digit positive integers whose digit sum is {a}.",),
    ),
    (
        ("A car travels {a} km in {b} hours and then {c} km in {d} hours.",
         "What is its average speed for the whole trip?"),
        ("{n} drives {a} km in {b} hours, then {c} km in {d} hours.",
         "Find the average speed over the entire journey in km/h."),
    ),
    (
        ("A shirt costs ${a}.", "It is discounted by {b}% and then the sale price rises by {c}%.",
         "What is the final price?"),
        ("After a {b}% discount and a later {c}% increase, what does a ${a} shirt cost?",),
    ),
    (
        ("What is the least common multiple of {a}, {b} and {c}?",),
        ("Find the smallest positive integer divisible by each of {a}, {b} and {c}.",),
    ),
    (
        ("The {o} has {a} visitors on the first day and the number grows by {b}% each day.",
         "How many visitors come on day {c}?"),
        ("Visitors to the {o} start at {a} and increase {b}% daily.",
         "Estimate the visitors on day {c}."),
    ),
    (
        ("If f(x) = {a}x^2 - {b}x + {c}, what is the minimum value of f?",),
        ("Find the smallest value taken by the quadratic {a}x^2 - {b}x + {c}.",),
    ),
    (
        ("{n} and a friend paint a fence together.",
         "{n} alone takes {a} hours and the friend alone takes {b} hours.",
         "How long do they take working together?"),
        ("Working alone, {n} paints the fence in {a} hours and a friend in {b} hours.",
         "How many hours does the job take if they work side by side?"),
    ),
    (
        ("How many diagonals does a convex polygon with {a} sides have?",),
        ("A convex {a}-gon is drawn at the {o}.", "Count its diagonals."),
    ),
    (
        ("A die is rolled {a} times.", "What is the probability of getting at least {b} sixes?"),
        ("{n} rolls a fair six-sided die {a} times.",
         "Find the chance that a six comes up {b} or more times."),
    ),
    (
        ("What is the last digit of {a}^{b}?",),
        ("Find the units digit of {a} raised to the power {b}.",),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """Everything that decides one question's wording."""

    family: int
    phrasing: int
    name: str
    item: str
    place: str
    numbers: tuple[int, ...]  # a, b, c, d
    context_order: tuple[int, ...]  # permutation of the context sentences
    opening: str

    def render(self) -> str:
        *context, question = FAMILIES[self.family][self.phrasing]
        ordered = [context[index] for index in self.context_order if index < len(context)]
        a, b, c, d = self.numbers
        text = " ".join([self.opening, *ordered, question]).strip()
        return text.format(n=self.name, m=self.item, o=self.place, a=a, b=b, c=c, d=d)


def generate_questions(count: int, seed: int = 0) -> list[dict[str, object]]:
    """`count` questions as {"question", "family"} records, seeded."""
    rng = random.Random(seed)
    recipes: list[Recipe] = []
    for _ in range(count):
        if recipes and rng.random() < DUPLICATE_SHARE:
            recipes.append(_edit(rng.choice(recipes), rng))
        else:
            recipes.append(_fresh(rng))
    return [{"question": recipe.render(), "family": recipe.family} for recipe in recipes]


def _fresh(rng: random.Random) -> Recipe:
    family = rng.randrange(len(FAMILIES))
    return Recipe(
        family=family,
        phrasing=rng.randrange(len(FAMILIES[family])),
        name=rng.choice(NAMES),
        item=rng.choice(ITEMS),
        place=rng.choice(PLACES),
        numbers=_numbers(rng),
        context_order=(0, 1),
        opening=rng.choice(OPENINGS) if rng.random() < 0.15 else "",
    )


def _edit(recipe: Recipe, rng: random.Random) -> Recipe:
    for _ in range(rng.randint(1, 3)):
        edit = rng.randrange(6)
        if edit <= 1:  # the most common drift: same wording, other numbers
            slot = rng.randrange(4)
            numbers = (*recipe.numbers[:slot], _numbers(rng)[0], *recipe.numbers[slot + 1 :])
            recipe = replace(recipe, numbers=numbers)
        elif edit == 2:
            phrasing = rng.randrange(len(FAMILIES[recipe.family]))
            recipe = replace(recipe, phrasing=phrasing)
        elif edit == 3:
            recipe = replace(recipe, context_order=recipe.context_order[::-1])
        elif edit == 4:
            recipe = replace(recipe, opening="" if recipe.opening else rng.choice(OPENINGS))
        else:
            recipe = replace(recipe, name=rng.choice(NAMES), item=rng.choice(ITEMS))
    return recipe


def _numbers(rng: random.Random) -> tuple[int, int, int, int]:
    return (rng.randint(2, 120), rng.randint(2, 60), rng.randint(2, 40), rng.randint(1, 30))


def main() -> None:
    lines = [json.dumps(row) for row in generate_questions(FIXTURE_COUNT, FIXTURE_SEED)]
    FIXTURE.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} questions to {FIXTURE}")


if __name__ == "__main__":
    main()
