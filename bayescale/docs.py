"""Documentation generated from the law catalog.

``docs/laws.md`` is the output of :func:`catalog_markdown` (``bayescale laws --markdown``); a test
fails when the two differ, so the page cannot drift from ``models/``.
"""

from __future__ import annotations

from bayescale.laws import Law, catalog

HEADER = """# The law catalog

Generated from `models/*.toml` by `bayescale laws --markdown > docs/laws.md`; a test checks that
this page matches the catalog. Each law is one TOML file: formula, inputs, parameters with
support and default prior, outcome type and citation. Priors use numpyro's parameterisation
(`Exponential` and `Gamma` take a **rate**).

A parameter with a *reference* is sampled as the log of its term at a reference scale inside the
data (the geometric mean of the input): the posterior and its prior are those of the parameter as
written, only the sampler's coordinates change (see `bayescale.model`). An *anchor* is not
estimated: `bayescale.fit` fixes it at the geometric mean of its input over the fitted runs
(`bayescale.fit_batch`, over each curve's runs), unless a `Fixed` prior gives its value.
"""


def catalog_markdown() -> str:
    """The Markdown of ``docs/laws.md``."""
    parts = [HEADER]
    for law in catalog().values():
        parts.append(law_markdown(law))
    return "\n".join(parts)


def law_markdown(law: Law) -> str:
    """One law's section of the catalog page."""
    lines = [
        f"## `{law.name}`: {law.title}",
        "",
        f"`{law.formula_text}`",
        "",
        f"Outcome: **{law.outcome}** ({law.better} is better). Catalog version {law.version}.",
        "",
        "| input | meaning | support |",
        "|---|---|---|",
    ]
    lines += [f"| `{i.name}` | {i.description} | {i.support} |" for i in law.inputs]
    lines += [
        "",
        "| parameter | meaning | support | default prior | sampled at reference |",
        "|---|---|---|---|---|",
    ]
    for p in law.parameters:
        reference = ""
        if p.reference is not None:
            ref = p.reference
            reference = f"{ref.kind} of `{ref.input}`, exponent `{ref.exponent.text}`" + "".join(
                f"; `{name}`, exponent `{exponent.text}`" for name, exponent in ref.also
            )
        prior = f"`{p.prior}`" if p.anchor is None else f"anchor: fixed at fit time (`{p.anchor}`)"
        lines.append(f"| `{p.name}` | {p.description} | {p.support} | {prior} | {reference} |")
    if law.likelihood:
        name = law.likelihood.get("name", "the outcome's default")
        priors = ", ".join(f"`{k} ~ {v}`" for k, v in law.likelihood.get("priors", {}).items())
        lines += ["", f"Default observation model: `{name}`" + (f"; {priors}." if priors else ".")]
    lines += ["", f"**Source.** {law.citation}", "", f"**Formula from.** {law.source}", ""]
    if law.notes.strip():
        lines += [" ".join(law.notes.split()), ""]
    for key, values in law.published.items():
        shown = ", ".join(f"{k} = {v}" for k, v in values.items() if k != "source")
        lines += [f"**Published ({key}).** {shown}. {values.get('source', '')}", ""]
    return "\n".join(lines)
