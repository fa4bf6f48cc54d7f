import sys
from pathlib import Path

# The server helper is imported by name from the tests here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
