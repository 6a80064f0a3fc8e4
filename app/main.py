"""The hwnas dashboard (`hwnas dashboard`): one Streamlit page per file under `app/app_pages/`."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

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
