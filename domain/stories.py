"""Stories with a cast: who is in it, who speaks between the players' turns, what each is asked.

A story's cast is the narrator (by default) and some of the server's characters, in the order
they were named. Between the players' turns the cast speak, by the story's ``cast_turns``:

- ``rotation``: after each player's turn, one of the cast speaks: the next after whoever of the
  cast spoke last, round and round (the narrator, then each character in order);
- ``all``: after each player's turn, the whole cast speaks once each, in order.

The opening is the first of the cast's. A cast member is known by a key: the character's id, or
:data:`NARRATOR` for the narrator. No Discord and no I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from domain.characters import Character, name_key
from domain.errors import UserFacingError
from model_service import GenerationParams, GenerationRequest

NARRATOR = 0  # the narrator's key (characters' ids start at 1)
NARRATOR_NAME = "Narrator"
MAX_CAST = 5  # characters in one story, the narrator aside
CAST_OPTION_MAX = 200  # the `cast` option's length: five names of up to 32 characters and commas

CAST_TURNS = ("rotation", "all")

# What the prompt keeps of the story (premise + latest turns); the model service then cuts
# from the left again to fit the model's own context.
CONTEXT_CHARS = 3000
PREMISE_SHARE = 4  # the premise takes at most a quarter of the prompt
STORY_TURN_TOKENS = 120  # a story's own turn, however long a channel lets /generate run

STORYTELLER = (
    "You are a storyteller writing a story together with a group of players. Write vivid narrative "
    "prose in the past tense: what happens next, with characters, places and dialogue. Never explain, "
    "summarise, give advice or address the reader; write only the story."
)

CHARACTER_ROLE = (
    "You are {name}, a character in a story that a group of players tells together. {persona}\n"
    "Speak only as {name}: what {name} says and does next, in the first person, in a few sentences. "
    "Never narrate for the others, explain, summarise or address the reader."
)


def parse_cast(text: str) -> list[str]:
    """The names in a ``cast`` option (separated by commas), each once, in the order given."""
    names: list[str] = []
    for part in text.split(","):
        name = " ".join(part.split())
        if name and all(name_key(name) != name_key(seen) for seen in names):
            names.append(name)
    if not names:
        raise UserFacingError("Name the story's cast as character names separated by commas.")
    if len(names) > MAX_CAST:
        raise UserFacingError(f"A story's cast has at most {MAX_CAST} characters, got {len(names)}.")
    return names


def unknown_names(wanted: Sequence[str], known: Collection[str]) -> list[str]:
    """The names in ``wanted`` that are none of ``known`` (case aside)."""
    keys = {name_key(name) for name in known}
    return [name for name in wanted if name_key(name) not in keys]


def unknown_cast_message(unknown: Sequence[str]) -> str:
    listed = ", ".join(f"“{name}”" for name in unknown)
    which = "character" if len(unknown) == 1 else "characters"
    return f"This server has no {which} named {listed}; see `/character list` (moderators make them with `/character create`)."


def opener(order: Sequence[int], present: Collection[int]) -> int | None:
    """Who of the cast opens the story: the first still there."""
    return next((key for key in order if key in present), None)


def next_speakers(
    order: Sequence[int], present: Collection[int], last: int | None, cast_turns: str
) -> list[int]:
    """Who of the cast speaks after a player's turn, in order (see the module's rules).

    ``order`` is the whole cast in speaking order (those who left included, so the rotation keeps
    its place), ``present`` those still in it, ``last`` the key of the cast member who spoke last.
    """
    here = [key for key in order if key in present]
    if cast_turns == "all" or not here:
        return here
    if last is None or last not in order:
        return here[:1]
    start = order.index(last) + 1
    for key in [*order[start:], *order[:start]]:
        if key in present:
            return [key]
    return []


def labelled(lines: Sequence[tuple[str | None, str]]) -> list[str]:
    """A story's lines for a prompt: ``Name: text`` for what a player or character said, the
    narrator's prose (``None``) as it is."""
    return [text if who is None else f"{who}: {text.strip()}" for who, text in lines]


def character_task(name: str, premise: str, story: str) -> str:
    """What a character of the cast is asked: the premise, the story so far, and to speak."""
    if not story:
        return f"Premise: {premise}\n\nThe story begins. What does {name} say and do first? Answer as {name}."
    return (
        f"Premise: {premise}\n\nThe story so far:\n\n{story}\n\n"
        f"What does {name} say and do now? Answer as {name}."
    )


def character_role(name: str, persona: str) -> str:
    return CHARACTER_ROLE.format(name=name, persona=persona.strip())


def story_prompt(premise: str, texts: Sequence[str], limit: int = CONTEXT_CHARS) -> str:
    """The premise and as many of the latest turns as fit in ``limit`` characters, in order."""
    head = premise.strip()[: limit // PREMISE_SHARE]
    room = limit - len(head)
    kept: list[str] = []
    for text in reversed([t.strip() for t in texts if t.strip()]):
        cost = len(text) + 2  # the blank line between pieces
        if cost > room:
            if not kept:  # the latest turn always counts, cut from the left if it must be
                kept.append(text[-max(1, room - 2) :])
            break
        kept.append(text)
        room -= cost
    return "\n\n".join([head, *reversed(kept)])


def story_request(
    premise: str,
    texts: Sequence[str],
    params: GenerationParams,
    model: str | None,
    *,
    turn_tokens: int = STORY_TURN_TOKENS,
) -> GenerationRequest:
    """The opening (no ``texts`` yet) or the next part, asked of the instruct model as a storyteller.

    The story's own ``turn_tokens`` decides how much it writes, not the channel's ``max_new_tokens``.
    """
    head, _, story = story_prompt(premise, texts).partition("\n\n")
    if story:
        task = f"Premise: {head}\n\nThe story so far:\n\n{story}\n\n"
        task += "Write the next paragraph of the story, carrying on from where it stops."
    else:
        task = f"Write the opening paragraph of a story about: {head}"
    turn = replace(params, max_new_tokens=turn_tokens)
    return GenerationRequest(prompt=task, params=turn, mode="chat", system_prompt=STORYTELLER, model=model)


def cast_request(
    premise: str,
    lines: Sequence[tuple[str | None, str]],
    voice: Character,
    params: GenerationParams,
    model: str | None,
    *,
    turn_tokens: int = STORY_TURN_TOKENS,
) -> GenerationRequest:
    """What one of the cast is asked for its line, given the story's lines so far (who said each,
    None for the story's prose): the narrator tells the story on, as the bot does in a story
    without a cast; a character speaks as itself, in its persona."""
    texts = labelled(lines)
    if voice.id == NARRATOR:
        return story_request(premise, texts, params, model, turn_tokens=turn_tokens)
    head, _, story = story_prompt(premise, texts).partition("\n\n")
    return GenerationRequest(
        prompt=character_task(voice.name, head, story),
        params=replace(params, max_new_tokens=turn_tokens),
        mode="chat",
        system_prompt=character_role(voice.name, voice.persona),
        model=model,
    )
