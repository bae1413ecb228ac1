"""The `stories` corpus: short English-like stories from a small grammar.

Made for 1-2 layer models: a moderate vocabulary (bigrams to learn), fixed
phrases with gaps (skip-trigrams), and plots in which the characters' names,
their pet's name and the story's object recur, so that copying an earlier name
pays off (the induction bump). Every draw comes from the `random.Random` it is
given; changing a word list or template changes the output, so bump VERSION.
"""

import random

VERSION = 1

_GIRLS = (
    "Lily",
    "Mia",
    "Emma",
    "Zoe",
    "Ava",
    "Sophie",
    "Grace",
    "Chloe",
    "Ella",
    "Ruby",
    "Nora",
    "Luna",
    "Hannah",
    "Anna",
    "Maya",
    "Priya",
    "Amara",
    "Ines",
    "Freya",
    "Hazel",
    "Isla",
    "Leah",
    "Clara",
    "Olive",
    "Rosa",
    "Tess",
    "Wren",
    "Yara",
    "Zara",
    "Nadia",
    "Mei",
    "Aiko",
    "Lucia",
    "Sara",
    "Elif",
    "Fatima",
    "Greta",
    "Ivy",
    "Juno",
    "Kira",
    "Lena",
    "Marta",
    "Naomi",
    "Pia",
    "Quinn",
    "Rhea",
    "Stella",
    "Talia",
    "Uma",
    "Vera",
    "Willa",
    "Ximena",
)
_BOYS = (
    "Tom",
    "Ben",
    "Max",
    "Sam",
    "Leo",
    "Jack",
    "Finn",
    "Noah",
    "Liam",
    "Owen",
    "Eli",
    "Jonah",
    "Theo",
    "Oscar",
    "Hugo",
    "Felix",
    "Arlo",
    "Milo",
    "Ravi",
    "Kofi",
    "Omar",
    "Mateo",
    "Diego",
    "Kenji",
    "Ivan",
    "Lars",
    "Pablo",
    "Tariq",
    "Yusuf",
    "Bruno",
    "Caleb",
    "Dev",
    "Emil",
    "Gus",
    "Henry",
    "Isaac",
    "Jasper",
    "Kai",
    "Luca",
    "Marco",
    "Nico",
    "Otto",
    "Peter",
    "Rafael",
    "Silas",
    "Tobias",
    "Victor",
    "Walter",
    "Xavier",
    "Zane",
)
_PETS = (
    ("dog", "barked"),
    ("cat", "meowed"),
    ("puppy", "yipped"),
    ("kitten", "purred"),
    ("bunny", "hopped"),
    ("duck", "quacked"),
    ("goat", "bleated"),
    ("pony", "neighed"),
    ("parrot", "squawked"),
    ("frog", "croaked"),
    ("hamster", "squeaked"),
    ("turtle", "blinked"),
)
_PET_NAMES = (
    "Biscuit",
    "Pepper",
    "Muffin",
    "Ziggy",
    "Noodle",
    "Pickles",
    "Sprout",
    "Bubbles",
    "Waffles",
    "Coco",
    "Rusty",
    "Peanut",
    "Mango",
    "Pebble",
    "Socks",
    "Tofu",
    "Clover",
    "Ginger",
    "Button",
    "Dash",
)
_OBJECTS = (
    "ball",
    "kite",
    "hat",
    "book",
    "drum",
    "boat",
    "doll",
    "robot",
    "truck",
    "box",
    "cup",
    "shell",
    "ribbon",
    "scarf",
    "map",
    "key",
    "lamp",
    "bell",
    "flute",
    "wagon",
    "blanket",
    "crayon",
    "marble",
    "whistle",
    "sled",
    "umbrella",
)
_ADJECTIVES = (
    "red",
    "blue",
    "green",
    "yellow",
    "purple",
    "shiny",
    "little",
    "big",
    "soft",
    "old",
    "new",
    "striped",
    "golden",
    "tiny",
    "bright",
    "spotted",
    "silver",
    "round",
)
_PLACES = (
    "park",
    "beach",
    "garden",
    "forest",
    "farm",
    "lake",
    "river",
    "hill",
    "market",
    "school",
    "library",
    "zoo",
    "meadow",
    "village",
    "pond",
    "playground",
    "castle",
    "harbor",
    "bakery",
    "museum",
)
_SPOTS = (
    "under a bench",
    "behind a tree",
    "near the gate",
    "in the tall grass",
    "by the fence",
    "under a bush",
    "next to a rock",
    "inside a basket",
    "behind the shed",
    "under the slide",
)
_FOODS = (
    "apples",
    "cookies",
    "cherries",
    "grapes",
    "muffins",
    "plums",
    "sandwiches",
    "carrots",
    "berries",
    "pancakes",
)
_ANIMALS = ("bird", "squirrel", "fox", "owl", "deer", "rabbit", "hedgehog", "mouse", "butterfly", "bee")
_FEELINGS_GOOD = ("happy", "glad", "proud", "excited", "cheerful")
_FEELINGS_BAD = ("sad", "worried", "upset", "scared", "lonely")
_RELATIVES = ("mom", "dad", "grandma", "grandpa", "aunt", "uncle", "big sister", "big brother")
_BUILDS = (("tower", "blocks"), ("castle", "sand"), ("house", "sticks"), ("bridge", "stones"), ("fort", "pillows"))
_JOBS = ("doctor", "pilot", "baker", "painter", "farmer", "singer", "teacher", "builder", "sailor", "astronaut")
_OPENERS = ("Once upon a time,", "One day,", "Long ago,", "One sunny morning,", "One rainy day,", "Last summer,")


def story(r: random.Random) -> str:
    """One story: a plot drawn at random, told with a cast drawn at random."""
    cast = _cast(r)
    plot = r.choice(_PLOTS)
    sentences = [s.format(**cast) for s in plot(r)]
    return " ".join(sentences)


def _person(r: random.Random, avoid: str = "") -> dict[str, str]:
    while True:
        girl = r.random() < 0.5
        name = r.choice(_GIRLS if girl else _BOYS)
        if name != avoid:
            break
    he, him, his = ("she", "her", "her") if girl else ("he", "him", "his")
    kid = "girl" if girl else "boy"
    return {"name": name, "kid": kid, "he": he, "him": him, "his": his, "He": he.capitalize(), "His": his.capitalize()}


def _cast(r: random.Random) -> dict[str, str]:
    a = _person(r)
    b = _person(r, avoid=a["name"])
    pet, sound = r.choice(_PETS)
    build, material = r.choice(_BUILDS)
    cast = {f"a_{k}" if k != "name" else "A": v for k, v in a.items()}
    cast |= {f"b_{k}" if k != "name" else "B": v for k, v in b.items()}
    cast |= {
        "pet": pet,
        "sound": sound,
        "P": r.choice(_PET_NAMES),
        "obj": r.choice(_OBJECTS),
        "adj": r.choice(_ADJECTIVES),
        "place": r.choice(_PLACES),
        "place2": r.choice(_PLACES),
        "spot": r.choice(_SPOTS),
        "spot2": r.choice(_SPOTS),
        "food": r.choice(_FOODS),
        "animal": r.choice(_ANIMALS),
        "good": r.choice(_FEELINGS_GOOD),
        "bad": r.choice(_FEELINGS_BAD),
        "rel": r.choice(_RELATIVES),
        "build": build,
        "material": material,
        "job": r.choice(_JOBS),
        "open": r.choice(_OPENERS),
        "n": str(r.randrange(2, 10)),
    }
    return cast


def _pick(r: random.Random, *options: str) -> str:
    return r.choice(options)


def _intro(r: random.Random) -> str:
    return _pick(
        r,
        "{open} there was a {a_kid} named {A}.",
        "{open} a {a_kid} named {A} lived near the {place}.",
        "{open} {A} woke up early.",
        "{open} {A} and {a_his} friend {B} were playing outside.",
    )


def _lost_object(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(
            r, "{A} had a {adj} {obj}.", "{A} loved {a_his} {adj} {obj} very much.", "{A} got a {adj} {obj} as a gift."
        ),
        _pick(
            r, "{A} took the {obj} to the {place} to play with {B}.", "{A} and {B} went to the {place} with the {obj}."
        ),
        _pick(r, "They played for a long time.", "They ran and laughed all afternoon."),
        _pick(r, "When {A} looked around, the {obj} was gone!", "Then {A} saw that the {adj} {obj} was not there."),
        _pick(r, "{A} felt {bad}.", "{A} was very {bad} and started to cry."),
        _pick(r, '{B} said, "Do not worry, {A}. We will find your {obj}."', "{B} wanted to help {A}."),
        _pick(r, "They looked {spot}.", "First they looked {spot}, but it was not there."),
        _pick(r, "Then they looked {spot2}.", "Next {B} looked {spot2}."),
        _pick(r, "There was the {adj} {obj}!", "{B} found the {obj} {spot2}!"),
        _pick(r, '"Thank you, {B}!" said {A}.', "{A} hugged {B} and said thank you."),
        _pick(r, "From that day on, {A} kept the {obj} close.", "{A} and {B} were {good} all day."),
    ]


def _sharing(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(r, "{A} had {n} {food} in a basket.", "{A} picked {n} {food} at the {place}."),
        _pick(r, "{B} came by and looked at the {food}.", "Then {A} met {B}, who had no {food}."),
        _pick(r, "{B} was hungry.", "{B} felt {bad} because {b_he} was hungry."),
        _pick(r, "{A} thought about it.", "{A} wanted to keep all the {food}."),
        _pick(r, 'Then {A} said, "{B}, you can have some of my {food}."', "But {A} gave {B} half of the {food}."),
        _pick(r, "{B} smiled at {A}.", '"Thank you, {A}," said {B}.'),
        _pick(r, "They sat by the {place2} and ate the {food} together.", "{A} and {B} ate the {food} together."),
        _pick(r, "Sharing made {A} feel {good}.", "{A} learned that sharing is fun."),
    ]


def _pet_runs_away(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(r, "{A} had a {pet} named {P}.", "{A} had a little {pet}. Its name was {P}."),
        _pick(r, "{P} liked to play with {A}'s {adj} {obj}.", "Every day {A} and {P} went to the {place}."),
        _pick(r, "One day the gate was open, and {P} ran away.", "One morning {P} was not in {a_his} bed."),
        _pick(r, '{A} called, "{P}! {P}, where are you?"', "{A} looked for {P} everywhere."),
        _pick(r, "{A} asked {B} for help.", "{B} came to help {A} look for {P}."),
        _pick(r, "They went to the {place2}.", "They walked all the way to the {place2}."),
        _pick(r, "Then they heard a sound. {P} {sound}!", "{P} was {spot}, and {P} {sound}."),
        _pick(r, "{A} picked up {P} and held {P} tight.", "{A} was so {good} to see {P} again."),
        _pick(r, "{A}, {B} and {P} walked home together.", "After that, {A} always closed the gate."),
    ]


def _building(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(
            r, "{A} wanted to build a {build} out of {material}.", "{A} had an idea: a big {build} made of {material}."
        ),
        _pick(r, "{A} worked hard on the {build}.", "{A} put the {material} up, one by one."),
        _pick(r, "But the {build} fell down.", "Then the wind came, and the {build} fell down."),
        _pick(r, "{A} felt {bad}.", "{A} almost gave up."),
        _pick(r, '{B} said, "Let us build the {build} together, {A}."', "{B} came and said {b_he} could help."),
        _pick(r, "{A} and {B} built the {build} again.", "This time {A} held the {material} and {B} stacked them."),
        _pick(r, "The new {build} was tall and strong.", "It was the best {build} at the {place}."),
        _pick(r, "{A} and {B} were very {good}.", '"We did it!" said {A}.'),
    ]


def _trip(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(r, "{A} went to the {place} with {a_his} {rel}.", "{A}'s {rel} took {A} and {B} to the {place}."),
        _pick(r, "At the {place}, {A} saw a {animal}.", "{A} saw a little {animal} near the {place}."),
        _pick(r, "The {animal} looked {bad}.", "The {animal} was stuck {spot}."),
        _pick(r, "{A} wanted to help the {animal}.", '"We have to help it," said {A}.'),
        _pick(r, "{A} and {B} helped the {animal} get free.", "{A} gently helped the {animal} out."),
        _pick(
            r, "The {animal} was free, and it ran to the {place2}.", "The {animal} looked at {A} and then went away."
        ),
        _pick(r, "{A}'s {rel} was proud of {A}.", "{A} felt {good} all the way home."),
    ]


def _race(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(r, "There was a big race at the {place}.", "{A} and {B} wanted to race to the {place}."),
        _pick(r, "{A} ran fast, and {B} ran fast too.", "{A} was fast, but {B} was fast too."),
        _pick(r, "Near the end, {B} fell down.", "Then {B} tripped {spot} and fell."),
        _pick(r, "{A} stopped running.", "{A} saw {B} fall and turned around."),
        _pick(r, "{A} helped {B} get up.", '"Are you okay, {B}?" asked {A}.'),
        _pick(r, "{A} and {B} crossed the line together.", "They walked to the end side by side."),
        _pick(r, "Everyone clapped for {A} and {B}.", "{A} did not win, but {A} was {good}."),
    ]


def _dream_job(r: random.Random) -> list[str]:
    return [
        _intro(r),
        _pick(r, "{A} wanted to be a {job} one day.", "{A} dreamed of being a {job}."),
        _pick(r, "Every day {A} played {job} with {B}.", "{A} told {B} all about being a {job}."),
        _pick(r, '{B} laughed and said, "You will be a great {job}, {A}!"', "{B} said {A} would be a good {job}."),
        _pick(r, "{A} practiced at the {place}.", "{A} worked hard every day."),
        _pick(r, "Years later, {A} became a {job}.", "When {A} grew up, {A} was a {job} at the {place2}."),
        _pick(r, "{A} still remembered {B}.", "And {B} was still {A}'s best friend."),
    ]


_PLOTS = (_lost_object, _sharing, _pet_runs_away, _building, _trip, _race, _dream_job)
