"""What every page shares: the database (opened once per URL) and the first-steps message."""

from __future__ import annotations

import os

import streamlit as st

from hwnas.db.session import Database, DbError, open_db, resolve_url

FIRST_STEPS = """No {what} in this database yet. From the command line:

```bash
hwnas train --dataset digits                      # the supernet
hwnas measure --run digits --target tflite --n 100 --blocks
hwnas predictor fit --target tflite
hwnas search --run digits --target tflite --budget tflite=0.3 --trials 200
```
(or `hwnas demo`, which does all of it), then reload this page."""


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Database:
    return open_db(url, create=False)


def db_url() -> str:
    return resolve_url(os.environ.get("HWNAS_DB"))


def database() -> Database | None:
    """The open database, or None after telling the user what is wrong."""
    try:
        return _open(db_url())
    except DbError as e:
        st.error(f"{e}")
        st.markdown(FIRST_STEPS.format(what="data"))
        return None


def first_steps(what: str) -> None:
    st.info(FIRST_STEPS.format(what=what))
