"""Benchmark 4: rankings latency with 2,000 providers and 1,000,000 ratings.

Data (bulk; see datagen.py): `rank_providers` providers (one in twenty suspended), each offering three
of five items and serving one of five regions (two of which cover the programme's county), enrolled
in the programme when they serve part of its region; `rank_ratings` completed redemptions of last
month spread over the approved providers, every one rated 1–5 (provider means 3.0–5.0), with
`rating_aggregate` summed from the rating rows exactly as `record_rating` keeps it; four complaints a
provider.

Measured, `rank_iterations` times per scope after five warm-up calls, for three scopes — the item
alone, the item in region 510131, the item in the programme:

- api: `GET /api/v1/rankings?…` through Flask's test client (routing, argument parsing, the service,
  the JSON of every ranked provider: the whole request except the socket; the client parses the
  body after the timing, as the reference's JSON is parsed after its own);
- service: `providers.service.rankings(…)` in a fresh session;
- reference: one raw SQL statement over the same tables (providers, offered item, region, enrolment,
  the summed aggregates and upheld complaint counts) and one over the choice history (the switch-away
  rates), plus the Bayesian score, the sort and json.dumps in Python, on a raw driver connection.

Reported: p50 and p95 (ms) of each, and api/reference. Target: api p95 ≤ 20 ms in every scope.
"""

import json
import time

from bench.common import TARGETS, Options, fmt, note, out, percentile, stage, table, verdict, write_result
from bench.datagen import (
    REGION,
    Bulk,
    load_complaints,
    load_providers,
    load_recipients,
    load_redeemed_month,
    previous_period,
    provider_items,
    setup_programme,
)
from providers.service import ranking
from vouchers.service.switching import MIN_PUBLIC_GROUP

ITEMS = [(f"BR-{index}", price, 4) for index, price in enumerate([1200, 5000, 3500, 5000, 6000], start=1)]
WARMUP = 5


def reference_query(bulk: Bulk, *, item_code: str, region_code: str | None, programme_id: int | None,
                    prior_weight: int) -> bytes:
    params: list = [item_code]
    aggregate_scope = ""
    if programme_id is not None:
        aggregate_scope = " AND a.programme_id = ?"
        params.append(programme_id)
    params.append(item_code)
    conditions = ""
    if region_code is not None:
        conditions += (" AND EXISTS (SELECT 1 FROM provider_region r WHERE r.provider_id = p.id "
                       "AND ? LIKE r.prefix || ?)")
        params += [region_code, "%"]
    if programme_id is not None:
        conditions += " AND EXISTS (SELECT 1 FROM enrolment e WHERE e.provider_id = p.id AND e.programme_id = ?)"
        params.append(programme_id)
    rows = bulk.execute(
        "SELECT p.id, p.name, p.kind, COALESCE(SUM(a.ratings_count), 0), COALESCE(SUM(a.score_sum), 0), "
        "COALESCE(SUM(a.satisfied_count), 0), (SELECT COUNT(*) FROM complaint c WHERE c.provider_id = p.id "
        "AND c.status = 'resolved' AND c.upheld = TRUE) "
        "FROM provider p LEFT JOIN rating_aggregate a ON a.provider_id = p.id AND a.item_code = ?" + aggregate_scope
        + " WHERE p.status = 'approved' AND EXISTS (SELECT 1 FROM provider_item i WHERE i.provider_id = p.id "
        "AND i.item_code = ?)" + conditions + " GROUP BY p.id, p.name, p.kind", tuple(params))
    scope_count = sum(int(row[3]) for row in rows)
    prior = sum(int(row[4]) for row in rows) / scope_count if scope_count else None
    switch_scope, switch_params = " AND programme_id = ?" if programme_id is not None else "", (
        [item_code, programme_id] if programme_id is not None else [item_code])
    switching = {pid: (int(chose), int(left)) for pid, chose, left in bulk.execute(
        "SELECT provider_id, COUNT(DISTINCT CASE WHEN left_it = 0 THEN recipient_id END), "
        "COUNT(DISTINCT CASE WHEN left_it = 1 THEN recipient_id END) FROM ("
        "SELECT to_provider_id AS provider_id, recipient_id, 0 AS left_it FROM choice_event WHERE item_code = ?"
        + switch_scope + " UNION ALL SELECT from_provider_id, recipient_id, 1 FROM choice_event WHERE item_code = ?"
        + switch_scope + " AND from_provider_id IS NOT NULL AND from_provider_id <> to_provider_id) u "
        "GROUP BY provider_id", tuple(switch_params * 2))}
    ranked = []
    for pid, name, kind, count, total, satisfied, complaints in rows:
        count, total = int(count), int(total)
        bayesian = None if prior is None else (prior_weight * prior + total) / (prior_weight + count)
        ranked.append({"provider_id": pid, "name": name, "kind": kind, "ratings_count": count,
                       "mean_score": total / count if count else None, "bayesian_score": bayesian,
                       "satisfaction_rate": int(satisfied) / count if count else None,
                       "complaints_count": int(complaints), "switch_away_rate": _switch_away(switching.get(pid))})
    ranked.sort(key=lambda row: (row["bayesian_score"] is None, -(row["bayesian_score"] or 0), -row["ratings_count"],
                                 row["provider_id"]))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    return json.dumps({"items": ranked}, ensure_ascii=False).encode()


def _switch_away(figures: tuple[int, int] | None) -> float | None:
    chose, left = figures or (0, 0)
    return round(left / chose, 4) if chose >= MIN_PUBLIC_GROUP else None


def timed(function, iterations: int) -> tuple[list[float], object]:
    result = None
    for _ in range(WARMUP):
        result = function()
    latencies = []
    for _ in range(iterations):
        began = time.perf_counter()
        result = function()
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, result


def run(options: Options, backend: str) -> dict:
    from urllib.parse import urlencode

    from marketplace.db import db

    providers, ratings = int(options.size("rank_providers")), int(options.size("rank_ratings"))
    iterations = int(options.size("rank_iterations"))
    out(f"\n== 4. rankings ({backend}): {providers:,} providers, {ratings:,} ratings, {iterations} calls per scope")
    with stage(options, backend, "rank") as staged:
        app, admin, url, now = staged.app, staged.admin, staged.url, staged.now
        period = previous_period(now)
        programme_id = setup_programme(app, items=ITEMS, choice_required=True, budget_fen=10**11, now=now)
        built = time.perf_counter()
        with Bulk(url) as bulk:
            approved = load_providers(bulk, providers, [code for code, _p, _q in ITEMS], programme_id, now,
                                      items_each=3, unapproved_every=20)
            recipients = load_recipients(bulk, max(100, min(20_000, ratings // 50)), now)
            month = load_redeemed_month(bulk, programme_id=programme_id, period=period, count=ratings,
                                        provider_ids=approved, offered=provider_items(bulk, approved),
                                        prices={code: price for code, price, _q in ITEMS}, recipients=recipients,
                                        scanned_by=admin.id, now=now, rated_every=1)
            complaints = load_complaints(bulk, provider_ids=approved, first_redemption=month["first_redemption"],
                                         redemptions=ratings, period=period, created_by=admin.id, now=now)
            bulk.analyze()
            aggregates = bulk.scalar("SELECT COUNT(*) FROM rating_aggregate")
            consistent = bulk.execute("SELECT SUM(ratings_count), SUM(score_sum) FROM rating_aggregate")[0] == \
                bulk.execute("SELECT COUNT(*), SUM(score) FROM rating")[0]
            note(f"built in {time.perf_counter() - built:.0f}s: {providers:,} providers ({len(approved):,} approved), "
                 f"{month['ratings']:,} ratings in {aggregates:,} aggregate rows (consistent: {consistent}), "
                 f"{complaints['complaints']:,} complaints")
            scopes = [("item", {"item_code": ITEMS[0][0]}),
                      ("item+region", {"item_code": ITEMS[0][0], "region_code": REGION}),
                      ("item+programme", {"item_code": ITEMS[0][0], "programme_id": programme_id})]
            client = app.test_client()
            weight = app.config["RANKING_PRIOR_WEIGHT"]
            results, rows = {}, []
            for scope, query in scopes:
                path = f"/api/v1/rankings?{urlencode(query)}"

                def api(path=path):
                    # The whole request and its body; parsing the JSON is the client's work, done afterwards
                    # (as the reference's JSON is parsed after its timing).
                    response = client.get(path)
                    assert response.status_code == 200, response.get_data(as_text=True)[:300]
                    return response

                def service(query=query):
                    with app.app_context():
                        try:
                            return ranking.rankings(**query)
                        finally:
                            db.session.remove()

                def reference(query=query):
                    return reference_query(bulk, item_code=query["item_code"], region_code=query.get("region_code"),
                                           programme_id=query.get("programme_id"), prior_weight=weight)

                api_ms, api_response = timed(api, iterations)
                api_rows = api_response.get_json()["items"]
                service_ms, _ = timed(service, iterations)
                reference_ms, reference_body = timed(reference, iterations)
                reference_rows = json.loads(reference_body)["items"]
                same_order = [row["provider_id"] for row in api_rows] == [row["provider_id"] for row in reference_rows]
                entry = {"ranked": len(api_rows), "same_order_as_reference": same_order}
                for name, values in (("api", api_ms), ("service", service_ms), ("reference", reference_ms)):
                    entry[f"{name}_p50_ms"] = round(percentile(values, 50), 2)
                    entry[f"{name}_p95_ms"] = round(percentile(values, 95), 2)
                entry["api_over_reference_p50"] = round(entry["api_p50_ms"] / entry["reference_p50_ms"], 2)
                results[scope] = entry
                rows.append([backend, scope, fmt(entry["ranked"]), fmt(entry["api_p50_ms"], 2),
                             fmt(entry["api_p95_ms"], 2), fmt(entry["service_p95_ms"], 2),
                             fmt(entry["reference_p95_ms"], 2), fmt(entry["api_over_reference_p50"], 2),
                             "yes" if same_order else "NO"])
    worst = max(entry["api_p95_ms"] for entry in results.values())
    target = TARGETS["rankings_p95_ms_max"]
    met = worst <= target
    same = all(entry["same_order_as_reference"] for entry in results.values())
    out(table(["backend", "scope", "ranked", "api p50", "api p95", "service p95", "ref p95", "api/ref",
               "same order"], rows))
    out(f"worst api p95 = {fmt(worst, 2)} ms (target ≤ {target:g}: {verdict(met)})")
    write_result(options, "rankings", backend, {
        "providers": providers, "approved": len(approved), "ratings": month["ratings"], "aggregate_rows": aggregates,
        "aggregates_consistent": consistent, "iterations": iterations, "scopes": results, "worst_api_p95_ms": worst,
        "target_p95_ms_max": target, "met": met, "same_order": same})
    return {"benchmark": "4. rankings", "backend": backend,
            "figure": f"api p95 {fmt(worst, 2)} ms (ref p95 "
                      f"{fmt(max(e['reference_p95_ms'] for e in results.values()), 2)} ms)",
            "ok": met and same and consistent}
