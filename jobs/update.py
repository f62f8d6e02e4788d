"""spark-submit entry point: `spark-submit jobs/update.py --conf conf/local.yaml [--set key=value ...]`."""
import sys

from persona.cli import main

if __name__ == "__main__":
    sys.exit(main(["update", *sys.argv[1:]]))
