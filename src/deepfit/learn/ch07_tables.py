"""Chapter 7 — Tables: house prices in Ames, Iowa (2,930 sales, 73 columns, many of them
categories); what a category embedding learns; which columns the model relies on; the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def _embedding_rows(predictor: Any, column: str) -> tuple[list[str], Any] | None:
    """The learned embedding vector of each value of a category column, or None if not found.

    Every category column shares one embedding table; a column's rows start after the rows of
    the columns before it (row 0 of each column is its unknown bucket, then its vocabulary)."""
    feature = predictor.preprocessor.features.get(column)
    vocabulary = getattr(feature, "vocabulary", None)
    tables = [m for m in predictor.model.modules() if getattr(m, "cat_embed", None) is not None]
    if vocabulary is None or not tables:
        return None
    offset = 0
    for name, f in predictor.preprocessor.features.items():
        if name == column:
            break
        offset += sum(f.cat_cardinalities())
    weight = tables[0].cat_embed.weight.detach().cpu().numpy()
    return vocabulary, weight[offset + 1: offset + 1 + len(vocabulary)]


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import shutil

    import numpy as np
    from sklearn.model_selection import train_test_split

    import deepfit
    from deepfit import datasets
    from deepfit.learn._common import pyplot, save, table

    out_dir = Path(out_dir)
    frame = datasets.rdataset("modeldata", "ames")
    if quick:
        frame = frame.sample(900, random_state=0)
    train, test = train_test_split(frame, test_size=0.2, random_state=0)
    kinds = frame.drop(columns=["Sale_Price"]).dtypes.map(lambda t: "number" if t.kind in "if" else "category")
    print(f"ames: {len(frame)} house sales, {frame.shape[1] - 1} columns ({(kinds == 'category').sum()} of them "
          f"text categories such as Neighborhood); target Sale_Price in dollars")

    mean_rmse = float(np.sqrt(((test["Sale_Price"] - train["Sale_Price"].mean()) ** 2).mean()))
    print(f"baseline: predict the mean training price  ->  test RMSE ${mean_rmse:,.0f}")
    settings = dict(max_epochs=5, k=2, width=32, depth=1) if quick else dict(time_limit=40)
    run_dir = out_dir / "runs" / "ames"
    shutil.rmtree(run_dir, ignore_errors=True)  # a run directory is created afresh
    # The quick version writes no run directory (the report's figures take seconds to draw).
    model = deepfit.fit(train, target="Sale_Price", test=test, out=None if quick else run_dir, progress=False, seed=0,
                        **settings)
    rmse, r2 = float(model.metrics["test_rmse"]), float(model.metrics.get("test_r2", float("nan")))
    print(f"deepfit.fit  ->  test RMSE ${rmse:,.0f}, R^2 {r2:.3f}" + ("" if quick else f"   (the report: {run_dir / 'report.html'})"))

    importance = model.feature_importance(test.head(150) if quick else test, repeats=1 if quick else 3)
    top = importance.head(12)
    print(f"\npermutation importance on the {150 if quick else len(test)} test sales (RMSE increase, dollars), the 12 largest:")
    table([{"column": r.column, "RMSE increase": f"{r.importance_mean:,.0f}", "std": f"{r.importance_std:,.0f}"}
           for r in top.itertuples()])

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    ax1.barh(top["column"][::-1], top["importance_mean"][::-1], xerr=top["importance_std"][::-1], color="tab:blue")
    ax1.set(xlabel="test RMSE increase when the column is shuffled ($)", title="Which columns the model relies on")
    ax1.tick_params(axis="y", labelsize=8)
    found = _embedding_rows(model, "Neighborhood")
    spread = None
    if found is not None:
        names, vectors = found
        centred = vectors - vectors.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T  # (neighbourhoods, 2): the two main directions of the embeddings
        spread = float(s[:2].sum() / s.sum())
        medians = train.groupby("Neighborhood")["Sale_Price"].median()
        colours = np.array([medians.get(n, np.nan) for n in names])
        points = ax2.scatter(xy[:, 0], xy[:, 1], c=colours, cmap="viridis", s=30)
        for (px, py), name in zip(xy, names):
            ax2.annotate(name.replace("_", " ")[:18], (px, py), fontsize=6, alpha=0.8, xytext=(2, 2),
                         textcoords="offset points")
        fig.colorbar(points, ax=ax2, label="median sale price ($)")
        ax2.set(title="Neighborhood embeddings (2 main directions)", xlabel="direction 1", ylabel="direction 2")
        print(f"\nNeighborhood: {len(names)} values, each a learned vector of {vectors.shape[1]}; "
              f"the 2 main directions hold {spread:.0%} of their spread")
    save(fig, out_dir, "tables.png")
    return {"mean_rmse": mean_rmse, "rmse": rmse, "r2": r2, "top_columns": top["column"].tolist(),
            "embedding_spread": spread}
