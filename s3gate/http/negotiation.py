"""Reading the weighted lists of content negotiation (RFC 9110 §12.4.2): Accept, Accept-Language."""

from __future__ import annotations


def weighted(header: str) -> list[tuple[str, float]]:
    """'text/html;q=0.9, */*;q=0.1' -> [('text/html', 0.9), ('*/*', 0.1)]: lower-cased, a bad q counts as 0."""
    out = []
    for item in header.split(","):
        value, *params = (p.strip() for p in item.split(";"))
        if not value:
            continue
        q = 1.0
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw)
                except ValueError:
                    q = 0.0
        out.append((value.lower(), q))
    return out
