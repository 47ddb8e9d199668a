"""``ecm desk``: the duty desk's board, a live page of open cases where people act
(stream/desk/server.py), its model (board.py) and who may sign in (auth.py)."""
