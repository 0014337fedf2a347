"""``python -m oceandata.dataservice``: the data service as JupyterHub starts it."""

from .app import main

if __name__ == "__main__":
    main()
