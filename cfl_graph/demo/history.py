"""The demo's history: a CPL published quarterly since the library opened, and what manufacturers did
with the library between the lists, played in the order it happened.

`plan(records)` decides everything from the generated CPL (`cpl_data`), deterministically: which list
first carries each version, which versions the CPL later lists as withdrawn or suspended, drops, or lists
with another hash, and which versions their manufacturers publish, declare commercial or withdraw, and
when. `cfl_graph.demo.load` then plays the plan through the ordinary services on a clock it moves
(`cfl_graph.clock`), so every time the library records is the day it happened in the story.

The story:
- The library opened on 1 January 2025 with the CPL of that day; the CPL is published quarterly, and a
  version's Date Added is the day of the first list that carries it. Versions listed before the opening
  (the back catalogue) never got images.
- Manufacturers publish most new versions within weeks of their listing; each has a habit (prompt,
  steady or slow), some versions are never published, and one small manufacturer never publishes at all.
- The CPL moves under the library: older versions are later listed as withdrawn or suspended, a few are
  dropped, one version's hash is mistyped for a quarter and corrected, and another's changes for good:
  the library holds the published images those changes touch, and releases the corrected one.
- About one new version in twenty is declared commercial; two published images are withdrawn by their
  manufacturers; each published version gets an upgrade pathway from the model's previous one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cfl_graph.demo.cpl_data import IN_SCOPE_DEVICE_TYPES, CplRecord
from cfl_graph.keys import VersionKey

OPENED = dt.date(2025, 1, 1)
LAST_LIST = dt.date(2026, 10, 1)
# The story stops here: what would happen later has not happened yet. It must stay behind the wall
# clock (a clock set in the future would put the audit trail out of order), which it is on any machine
# that runs the demo.
STORY_ENDS = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)
COMMERCIAL_PER_HUNDRED = 5
WITHDRAWN_BY_MANUFACTURER = 2
WITHDRAWAL_REASON = "meters lose their tariff after a Comms Hub restart"
COMMERCIAL_REASON = "developed for one supplier under contract"


def quarterly_lists(first: dt.date = OPENED, last: dt.date = LAST_LIST) -> list[dt.date]:
    days = []
    year, month = first.year, first.month
    while (day := dt.date(year, month, 1)) <= last:
        days.append(day)
        year, month = (year + 1, 1) if month == 10 else (year, month + 3)
    return days


class Habit(StrEnum):
    PROMPT = "prompt"
    STEADY = "steady"
    SLOW = "slow"
    SILENT = "silent"  # never publishes


@dataclass(frozen=True)
class Publication:
    key: VersionKey
    model_name: str
    uploaded: dt.datetime
    published: dt.datetime


@dataclass(frozen=True)
class Upload:
    publication: Publication


@dataclass(frozen=True)
class Declaration:
    key: VersionKey
    at: dt.datetime


@dataclass(frozen=True)
class Pathway:
    model: VersionKey  # the key of the version the pathway starts from
    to_version: str
    at: dt.datetime


@dataclass(frozen=True)
class Withdrawal:
    key: VersionKey
    at: dt.datetime


@dataclass
class Plan:
    lists: list[tuple[dt.date, list[CplRecord]]]
    habits: dict[str, Habit]
    publications: list[Publication] = field(default_factory=list)
    declarations: list[Declaration] = field(default_factory=list)
    pathways: list[Pathway] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    # What the CPL does to versions over time, for the record (and the tests).
    status_changes: int = 0
    removals: int = 0
    hash_changes: list[tuple[VersionKey, int, int | None]] = field(default_factory=list)  # (key, from, until)

    def events(self) -> list[tuple[dt.datetime, int, object]]:
        """Every event in the order it happened (a list before what is done with it the same day)."""
        found: list[tuple[dt.datetime, int, object]] = []
        for index, (day, _) in enumerate(self.lists):
            found.append((_at(day, 8), 0, index))
        for publication in self.publications:
            found.append((publication.uploaded, 1, Upload(publication)))
            found.append((publication.published, 5, publication))
        for declaration in self.declarations:
            found.append((declaration.at, 2, declaration))
        for pathway in self.pathways:
            found.append((pathway.at, 3, pathway))
        for withdrawal in self.withdrawals:
            found.append((withdrawal.at, 4, withdrawal))
        return sorted((e for e in found if e[0] <= STORY_ENDS), key=lambda e: (e[0], e[1]))


def _share(salt: str, *parts: object) -> float:
    """A fixed draw in [0, 1) for a key: the same CPL always gives the same story."""
    digest = hashlib.sha256(f"{salt}:{':'.join(map(str, parts))}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def _habits(records: Sequence[CplRecord], never: str | None) -> dict[str, Habit]:
    """Each manufacturer's habit; the smallest one (by rows) never publishes, the demo's own never silent."""
    rows: dict[str, int] = defaultdict(int)
    for record in records:
        rows[record.manufacturer_id] += 1
    smallest = min(sorted(rows), key=lambda m: rows[m])
    habits = {}
    for manufacturer in sorted(rows):
        draw = _share("habit", manufacturer)
        habits[manufacturer] = Habit.PROMPT if draw < 0.4 else Habit.STEADY if draw < 0.8 else Habit.SLOW
    if smallest != never:
        habits[smallest] = Habit.SILENT
    return habits


def _delay_days(habit: Habit, key: VersionKey) -> float | None:
    """Days from listing to publication, or None for a version never published."""
    draw, size = _share("never", key), _share("delay", key)
    if habit is Habit.SILENT or draw < {Habit.PROMPT: 0.05, Habit.STEADY: 0.1, Habit.SLOW: 0.2}[habit]:
        return None
    late = _share("late", key) < {Habit.PROMPT: 0.03, Habit.STEADY: 0.1, Habit.SLOW: 0.35}[habit]
    if late:
        return 31 + size * 90
    low, high = {Habit.PROMPT: (1, 12), Habit.STEADY: (4, 26), Habit.SLOW: (10, 30)}[habit]
    return low + size * (high - low)


def plan(records: Iterable[CplRecord], *, demo_manufacturer: str | None = None) -> Plan:
    """The whole story from the final CPL's rows (`cpl_data.generate`)."""
    final = list(records)
    days = quarterly_lists()
    last = len(days) - 1
    habits = _habits(final, demo_manufacturer)

    first_list: dict[VersionKey, int] = {}
    shown: dict[VersionKey, CplRecord] = {}
    status_from: dict[VersionKey, int] = {}  # the list from which a non-active final status shows
    removed_from: dict[VersionKey, int] = {}
    for record in final:
        key = _key(record)
        index = next(i for i, day in enumerate(days) if day >= record.date_added)
        first_list[key] = index
        # A quarterly list dates a version by the list that first carries it; the back catalogue keeps
        # the dates it was listed on.
        shown[key] = replace(record, date_added=days[index]) if index else record
        if record.status != "Active":
            # Superseded versions are withdrawn (or suspended) months or years after their listing.
            change = shown[key].date_added + dt.timedelta(days=120 + int(_share("status", key) * 780))
            later = next((i for i, d in enumerate(days) if d >= change), None)
            if later is not None:  # else the CPL has not got round to it yet: still active
                status_from[key] = later
        elif index and index < last and _share("removed", key) < 0.012:
            removed_from[key] = min(index + 1 + int(_share("removed-at", key) * 3), last)

    result = Plan(lists=[], habits=habits)
    result.status_changes = sum(1 for k, i in status_from.items() if i > first_list[k])
    result.removals = len(removed_from)

    # What the manufacturers do, version by version (new versions only: the back catalogue never got
    # images), stopping where the CPL would refuse it (the version no longer active, or gone).
    by_model: dict[tuple[str, str, str], list[Publication]] = defaultdict(list)
    for key in sorted(shown, key=lambda k: (first_list[k], k)):
        record = shown[key]
        index = first_list[key]
        if not index or record.device_type not in IN_SCOPE_DEVICE_TYPES:
            continue
        ends = min(status_from.get(key, last + 1), removed_from.get(key, last + 1))
        deadline = _at(days[ends], 8) if ends <= last else STORY_ENDS
        listed = _at(days[index], 9)
        if _share("commercial", key) * 100 < COMMERCIAL_PER_HUNDRED:
            at = listed + dt.timedelta(days=3 + _share("declared", key) * 20)
            if at < deadline:
                result.declarations.append(Declaration(key, at))
            continue
        delay = _delay_days(habits[key.manufacturer_id], key)
        if delay is None:
            continue
        published = listed + dt.timedelta(days=delay)
        if published >= deadline:
            continue
        uploaded = published - dt.timedelta(hours=2 + _share("upload", key) * 40)
        uploaded = max(uploaded, listed + dt.timedelta(minutes=30))
        publication = Publication(key, record.model_name, uploaded, published)
        result.publications.append(publication)
        by_model[key.manufacturer_id, key.model_id, key.hardware_version].append(publication)

    # A pathway to each published version from the highest lower version of its model published before
    # it (and now and then from the next lower one too), recorded an hour after the publication: the
    # chain a supplier follows (versions only go up, as ZigBee OTA requires).
    for model_publications in by_model.values():
        earlier: list[Publication] = []
        for publication in sorted(model_publications, key=lambda p: p.published):
            number = int(publication.key.firmware_version, 16)
            below = [p for p in earlier if int(p.key.firmware_version, 16) < number]
            earlier.append(publication)
            if not below:
                continue
            ranked = sorted(below, key=lambda p: int(p.key.firmware_version, 16), reverse=True)
            # From the version just below; a third of the time also from the one below that, so that
            # devices two versions behind may skip one (and a plan has routes of different lengths).
            sources = ranked[:2] if _share("skip", publication.key) < 0.33 else ranked[:1]
            at = publication.published + dt.timedelta(hours=1)
            for before in sources:
                pair = (before.key, publication.key)
                last_day = min(_ends(k, status_from, removed_from, days) for k in pair)
                if at < min(last_day, STORY_ENDS):
                    result.pathways.append(Pathway(before.key, publication.key.firmware_version, at))

    # Two images withdrawn by their manufacturers, six weeks after publication.
    chosen = sorted(result.publications, key=lambda p: _share("withdrawn", p.key))
    for publication in [p for p in chosen if p.key.manufacturer_id != demo_manufacturer][
        :WITHDRAWN_BY_MANUFACTURER
    ]:
        at = publication.published + dt.timedelta(days=42)
        result.withdrawals.append(Withdrawal(publication.key, min(at, STORY_ENDS)))

    # Hash changes on two published versions: one mistyped for a quarter and corrected, one for good.
    withdrawn = {w.key for w in result.withdrawals}
    candidates = [
        p
        for p in sorted(result.publications, key=lambda p: p.published)
        if p.key not in withdrawn
        and p.key not in status_from
        and p.key not in removed_from
        and p.published < _at(days[last - 3], 0)
    ]
    hash_changed: dict[VersionKey, tuple[int, int | None]] = {}
    if len(candidates) >= 2:
        typo, changed = candidates[len(candidates) // 3], candidates[2 * len(candidates) // 3]
        typo_list = next(i for i, d in enumerate(days) if _at(d, 8) > typo.published)
        hash_changed[typo.key] = (typo_list, typo_list + 1)
        changed_list = next(i for i, d in enumerate(days) if _at(d, 8) > changed.published)
        hash_changed[changed.key] = (changed_list, None)
        result.hash_changes = [(k, a, b) for k, (a, b) in hash_changed.items()]

    for index, day in enumerate(days):
        rows = []
        for record in final:
            key = _key(record)
            if first_list[key] > index or removed_from.get(key, last + 1) <= index:
                continue
            row = shown[key]
            row = replace(row, status=row.status if status_from.get(key, last + 1) <= index else "Active")
            if key in hash_changed:
                start, end = hash_changed[key]
                if start <= index and (end is None or index < end):
                    row = replace(
                        row, image_hash=hashlib.sha256(f"another build of {key}".encode()).hexdigest()
                    )
            rows.append(row)
        result.lists.append((day, rows))
    return result


def _ends(
    key: VersionKey,
    status_from: dict[VersionKey, int],
    removed_from: dict[VersionKey, int],
    days: list[dt.date],
) -> dt.datetime:
    index = min(status_from.get(key, len(days)), removed_from.get(key, len(days)))
    return _at(days[index], 8) if index < len(days) else STORY_ENDS


def _key(record: CplRecord) -> VersionKey:
    return VersionKey(
        record.manufacturer_id, record.model_id, record.hardware_version, record.firmware_version
    )
