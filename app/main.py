"""The hwnas dashboard (`hwnas dashboard`): one Streamlit page per file under `app/app_pages/`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import streamlit as st

if importlib.util.find_spec("hwnas") is None:  # a checkout, not installed: hwnas/ is beside app/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAGES = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="hwnas", layout="wide")
nav = st.navigation(
    [
        st.Page(PAGES / "searches_page.py", title="Searches", default=True),
        st.Page(PAGES / "pareto_page.py", title="Pareto explorer", url_path="pareto"),
        st.Page(PAGES / "latency_page.py", title="Latency", url_path="latency"),
        st.Page(PAGES / "runs_page.py", title="Supernet runs", url_path="runs"),
    ]
)
nav.run()
