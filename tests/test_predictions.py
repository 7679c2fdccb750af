"""Predicted CLV end to end: the models' inputs computed by the data engine, the predicted
attributes in segments and templates on DuckDB and PostgreSQL, ``clvflow predict fit`` on
the CDNOW sample (the published parameters), ``clvflow predict check`` and the errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvflow.cli.main import app, main
from clvflow.data.sources import open_shop_data
from clvflow.errors import DataError
from clvflow.predictions.bgnbd import expected_orders, fit_bgnbd, p_alive
from clvflow.predictions.gamma_gamma import expected_order_value, fit_gamma_gamma
from clvflow.predictions.summary import read_summary
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.evaluation import evaluate_segments
from clvflow.segments.members import member_frame, member_ids
from tests.conftest import (
    AS_OF,
    BASE_CONFIG,
    POSTGRES_URL,
    ROOT,
    ProjectFactory,
    postgres_schema,
    write_files,
)

CDNOW = ROOT / "tests" / "data" / "CDNOW_sample.txt"
HORIZON = 365.0
PREDICTED = ["p_alive", "predicted_orders", "expected_order_value", "predicted_clv"]
SEGMENTS = {
    "likely_gone": "p_alive: {less_than: 0.3}",
    "top_predicted": "predicted_clv: {top_percent: 10}",
    "busy_next_year": "predicted_orders: {at_least: 1.5}",
    "big_baskets": "expected_order_value: {between: [60, 1000]}",
    "slipping": "all:\n    - historical_clv: {top_percent: 30}\n    - p_alive: {less_than: 0.5}",
}


def pandas_summary(orders: pd.DataFrame, customers: pd.Series, day: pd.Timestamp) -> pd.DataFrame:
    """The models' inputs read with pandas (the reference for the engine's query)."""
    orders = orders[orders["customer_id"].isin(customers) & (orders["placed_at"] <= day)]
    orders = orders.assign(day=orders["placed_at"].dt.normalize())
    days = orders.groupby(["customer_id", "day"], as_index=False)["total"].sum()
    first = days.groupby("customer_id")["day"].transform("min")
    days = days.assign(repeat=np.where(days["day"] > first, days["total"], np.nan))
    per = days.groupby("customer_id").agg(
        n=("day", "size"), first=("day", "min"), last=("day", "max"), repeat=("repeat", "sum")
    )
    frequency = (per["n"] - 1).astype(float)
    return pd.DataFrame(
        {
            "frequency": frequency,
            "recency": (per["last"] - per["first"]).dt.days.astype(float),
            "age": (day.normalize() - per["first"]).dt.days.astype(float),
            "monetary": np.where(frequency > 0, per["repeat"] / frequency.replace(0, 1), np.nan),
        }
    )


def expected_scores(data_dir: Path) -> pd.DataFrame:
    """Every customer's predicted attributes computed from the CSV files with pandas and
    the model functions."""
    orders = pd.read_csv(data_dir / "orders.csv", dtype={"customer_id": str})
    orders["placed_at"] = pd.to_datetime(orders["placed_at"])
    customers = pd.read_csv(data_dir / "customers.csv", dtype={"customer_id": str})["customer_id"]
    s = pandas_summary(orders, customers, pd.Timestamp(AS_OF))
    f, r, t, m = (s[c].to_numpy() for c in ("frequency", "recency", "age", "monetary"))
    purchases = fit_bgnbd(f, r, t).params
    spend = fit_gamma_gamma(f[f > 0], m[f > 0]).params
    orders_ahead = expected_orders(purchases, HORIZON, f, r, t)
    value = expected_order_value(spend, f, m)
    return pd.DataFrame(
        {
            "p_alive": p_alive(purchases, f, r, t),
            "predicted_orders": orders_ahead,
            "expected_order_value": value,
            "predicted_clv": orders_ahead * value,
        },
        index=s.index,
    )


def _segment_files() -> dict[str, str]:
    return {
        f"segments/{name}.yaml": f"description: {name}\nwhere:\n  {condition}\n"
        for name, condition in SEGMENTS.items()
    }


def _frames(project: Project) -> dict[str, pd.DataFrame]:
    catalog = SegmentCatalog.load(project.segments_dir)
    data = open_shop_data(project)
    try:
        return {
            name: member_frame(data, compile_segment(catalog, name, data, AS_OF), AS_OF).set_index(
                "customer_id"
            )
            for name in SEGMENTS
        }
    finally:
        data.close()


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clvflow.demo.shop import ShopSize, generate_shop

    folder = tmp_path_factory.mktemp("prediction-shop")
    generate_shop(
        folder, reference=AS_OF.date(), seed=11, size=ShopSize(customers=1500, orders=6000)
    )
    return folder


@pytest.fixture
def files_project(tmp_path: Path, demo_files: Path) -> Project:
    root = tmp_path / "files"
    write_files(root, {"clvflow.yaml": BASE_CONFIG, **_segment_files()})
    (root / "templates").mkdir()
    for table in ("customers", "orders", "order_items", "products"):
        (root / "data").mkdir(exist_ok=True)
        (root / "data" / f"{table}.csv").write_bytes((demo_files / f"{table}.csv").read_bytes())
    return Project.load(root)


@pytest.fixture
def postgres_project(tmp_path: Path, demo_files: Path) -> Iterator[Project]:
    """The same shop in a fresh schema of the machine's PostgreSQL."""
    from sqlalchemy import text

    with postgres_schema("predict") as (engine, schema):
        for table in ("customers", "orders"):
            frame = pd.read_csv(demo_files / f"{table}.csv", dtype=str, keep_default_na=False)
            frame = frame.replace({"": None})
            typed = {"placed_at": "TIMESTAMP", "total": "NUMERIC(12,2)"}
            columns = ", ".join(f'"{c}" {typed.get(c, "TEXT")}' for c in frame.columns)
            names = ", ".join(f'"{c}"' for c in frame.columns)
            marks = ", ".join(f":{c}" for c in frame.columns)
            with engine.begin() as con:
                con.execute(text(f'CREATE TABLE "{schema}"."{table}" ({columns})'))
                con.execute(
                    text(f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({marks})'),
                    frame.to_dict(orient="records"),
                )
        head = BASE_CONFIG.split("data:")[0]
        config = (
            f"{head}data:\n  url: {POSTGRES_URL}\n  customers: {schema}.customers\n"
            f"  orders: {schema}.orders\n  order_items: null\n  products: null\n"
            "ledger: sqlite:///.clvflow/ledger.db\n"
        )
        root = tmp_path / "postgres"
        write_files(root, {"clvflow.yaml": config, **_segment_files()})
        (root / "templates").mkdir()
        yield Project.load(root)


def test_the_inputs_are_the_same_in_slices(files_project: Project, demo_files: Path) -> None:
    """A large shop's inputs are computed a slice of customers at a time: the same rows."""
    data = open_shop_data(files_project)
    try:
        whole = read_summary(data, AS_OF)
        sliced = read_summary(data, AS_OF, slice_orders=1000)
    finally:
        data.close()
    orders = pd.read_csv(demo_files / "orders.csv")
    assert len(orders) > 5000  # so the slices are several
    assert whole.fingerprint() == sliced.fingerprint()
    assert sorted(whole.customer_id) == sorted(sliced.customer_id)


def test_predicted_attributes_are_the_models_scores(
    files_project: Project, demo_files: Path
) -> None:
    """Members and values of segments on predicted attributes equal the model functions
    applied to a pandas reading of the same orders."""
    expected = expected_scores(demo_files)
    frames = _frames(files_project)
    thresholds = {
        "likely_gone": expected["p_alive"] < 0.3,
        "busy_next_year": expected["predicted_orders"] >= 1.5,
        "big_baskets": expected["expected_order_value"].between(60, 1000, inclusive="left"),
    }
    for name, chosen in thresholds.items():
        assert sorted(frames[name].index) == sorted(expected.index[chosen]), name
        assert len(frames[name]) > 0, name
    for name, frame in frames.items():
        got = frame[PREDICTED].astype(float)
        want = expected.loc[got.index, PREDICTED]
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-6, err_msg=name)
    # top 10 % by predicted CLV among the customers who have one (ties included)
    clv = expected["predicted_clv"].dropna()
    rank = clv.rank(method="min", ascending=False)
    assert sorted(frames["top_predicted"].index) == sorted(clv.index[rank <= 0.1 * len(clv) + 1e-9])


@pytest.mark.postgres
def test_postgres_and_duckdb_agree(files_project: Project, postgres_project: Project) -> None:
    on_files, on_postgres = _frames(files_project), _frames(postgres_project)
    for name in SEGMENTS:
        assert list(on_postgres[name].index) == list(on_files[name].index), name
        np.testing.assert_allclose(
            on_postgres[name][PREDICTED].astype(float).to_numpy(),
            on_files[name][PREDICTED].astype(float).to_numpy(),
            rtol=1e-6,  # the two engines' sums differ in the last bits: so do the fits
            err_msg=name,
        )
    # evaluated together (one shared facts relation) as a run does
    catalog = SegmentCatalog.load(postgres_project.segments_dir)
    data = open_shop_data(postgres_project)
    try:
        together = evaluate_segments(catalog, list(SEGMENTS), data, AS_OF)
    finally:
        data.close()
    assert {n: sorted(on_files[n].index) for n in SEGMENTS} == together


def test_a_template_reads_predicted_clv(files_project: Project, demo_files: Path) -> None:
    expected = expected_scores(demo_files)
    customer = str(expected["predicted_clv"].idxmax())
    write_files(
        files_project.root,
        {
            "templates/score.html.j2": "---\nsubject: Hi\nkind: transactional\n---\n"
            "<p>CLV {{ '%.4f' % customer.predicted_clv }} "
            "alive {{ '%.4f' % customer.p_alive }}</p>\n"
        },
    )
    result = CliRunner().invoke(
        app,
        [
            "preview",
            "score",
            "--customer",
            customer,
            "--project",
            str(files_project.root),
            "--as-of",
            AS_OF.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    html = Path(result.output.split("html: ")[1].splitlines()[0]).read_text()
    shown = re.search(r"CLV ([0-9.]+) alive ([0-9.]+)", html)
    assert shown is not None, html
    assert float(shown[1]) == pytest.approx(expected.loc[customer, "predicted_clv"], rel=1e-6)
    assert float(shown[2]) == pytest.approx(expected.loc[customer, "p_alive"], abs=1e-4)


def _cdnow_project(root: Path) -> Path:
    raw = pd.read_csv(
        CDNOW, sep=r"\s+", header=None, names=["index", "id", "date", "cds", "value"], dtype=str
    )
    customers = pd.DataFrame({"customer_id": raw["id"].unique()})
    customers["email"] = "c" + customers["customer_id"] + "@example.com"
    customers["first_name"] = "C"
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(len(raw))],
            "customer_id": raw["id"],
            "placed_at": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "total": raw["value"].astype(float),
        }
    )
    config = BASE_CONFIG.replace("  order_items: data/order_items.csv\n", "").replace(
        "  products: data/products.csv\n", ""
    )
    write_files(root, {"clvflow.yaml": config})
    (root / "data").mkdir()
    customers.to_csv(root / "data" / "customers.csv", index=False)
    orders.to_csv(root / "data" / "orders.csv", index=False)
    return root


def test_predict_fit_gives_the_published_cdnow_parameters(tmp_path: Path) -> None:
    """Fader, Hardie & Lee (2005): BG/NBD r=0.243, α=4.414 (weeks), a=0.793, b=2.426,
    LL=−9582.4 on 1997-01-01 – 1997-09-30; Gamma-Gamma p=6.25, q=3.74, γ=15.44."""
    root = _cdnow_project(tmp_path / "cdnow")
    args = [
        "predict",
        "fit",
        "--project",
        str(root),
        "--as-of",
        "1997-09-30 23:59",
        "--format",
        "json",
        "--time-unit",
        "weeks",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    purchases, spend = fitted["purchases"], fitted["spend"]
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "log_likelihood": -9582.4}
    for key, value in published.items():
        assert f"{purchases[key]:.3g}" == f"{value:.3g}", key
    assert purchases["customers"] == 2357
    assert spend["customers"] == 946
    assert (f"{spend['p']:.3g}", f"{spend['q']:.3g}", f"{spend['gamma']:.3g}") == (
        "6.25",
        "3.74",
        "15.4",
    )
    assert abs(spend["frequency_value_correlation"]) < 0.3
    # the same fit in days: α scales with the unit, r, a and b do not
    days = CliRunner().invoke(app, [*args[:-1], "days"])
    in_days = json.loads(days.output)["purchases"]
    assert in_days["alpha"] == pytest.approx(7 * purchases["alpha"], rel=1e-9)
    assert in_days["r"] == pytest.approx(purchases["r"], rel=1e-9)
    text = CliRunner().invoke(app, args[:6])
    assert text.exit_code == 0
    assert "Correlation of repeat purchases and their mean value" in text.output


def test_predict_check_beats_the_naive_baseline_on_cdnow(tmp_path: Path) -> None:
    """Calibrated on 39 weeks, checked on the following 39 (the paper's split)."""
    root = _cdnow_project(tmp_path / "cdnow")
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "check",
            "--project",
            str(root),
            "--as-of",
            "1998-06-30 23:59",
            "--holdout",
            "273 days",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)
    assert check["cutoff"].startswith("1997-09-30")
    assert check["customers"] == 2357
    # what happened, counted from the file
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["i", "id", "date", "n", "v"])
    later = raw[(raw["date"] > 19970930) & (raw["date"] <= 19980630)]
    assert check["actual_purchases"] == later.groupby("id")["date"].nunique().sum()
    assert check["predicted_purchases"] == pytest.approx(check["actual_purchases"], rel=0.15)
    assert check["mean_absolute_error"] < check["naive_mean_absolute_error"]
    rows = check["by_repeat_purchases"]
    assert [r["label"] for r in rows] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(r["customers"] for r in rows) == 2357
    # the classic chart: the model follows actual purchases by past repeat purchases
    for row in rows:
        assert row["predicted"] == pytest.approx(row["actual"], abs=0.6), row


def test_unfit_models_are_an_error_for_a_segment_that_needs_them(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny shop has too few repeat buyers to fit: a segment testing p_alive fails
    saying so, while templates and other segments still work (values missing)."""
    root = make_project(
        {
            "segments/gone.yaml": "description: d\nwhere:\n  p_alive: {less_than: 0.5}\n",
            "segments/all.yaml": "description: d\nwhere:\n  orders_count: {at_least: 0}\n",
        }
    )
    write_files(
        root,
        {"data/orders.csv": "order_id,customer_id,placed_at,total\nO1,C1,2026-01-05 10:00,10\n"},
    )
    project = Project.load(root)
    catalog = SegmentCatalog.load(project.segments_dir)
    data = open_shop_data(project)
    try:
        with pytest.raises(DataError, match="cannot fit the purchase model"):
            member_ids(data, compile_segment(catalog, "gone", data, AS_OF))
        frame = member_frame(data, compile_segment(catalog, "all", data, AS_OF), AS_OF)
    finally:
        data.close()
    assert frame["p_alive"].isna().all() and len(frame) > 0
    code = main(["segments", "members", "gone", "--project", str(root)])
    assert code == DataError.exit_code
    error = capsys.readouterr().err
    assert "cannot fit the purchase model" in error and "more than one day" in error
    assert "Traceback" not in error


def test_a_fit_is_kept_per_data_and_day(files_project: Project, demo_files: Path) -> None:
    """The second fit of one day reads the kept one; changed orders fit again."""
    args = [
        "predict",
        "fit",
        "--project",
        str(files_project.root),
        "--format",
        "json",
        "--as-of",
        AS_OF.isoformat(),
    ]
    first = CliRunner().invoke(app, args)
    kept = list((files_project.cache_dir / "predictions").glob("fit-*.json"))
    assert first.exit_code == 0 and len(kept) == 1
    again = CliRunner().invoke(app, args)
    assert json.loads(again.output) == json.loads(first.output)
    assert list((files_project.cache_dir / "predictions").glob("fit-*.json")) == kept
    orders = files_project.root / "data" / "orders.csv"
    lines = orders.read_text().splitlines()
    orders.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    changed = CliRunner().invoke(app, args)
    assert changed.exit_code == 0
    assert json.loads(changed.output)["purchases"] != json.loads(first.output)["purchases"]
    assert len(list((files_project.cache_dir / "predictions").glob("fit-*.json"))) == 2
