from .commands import app

app()
