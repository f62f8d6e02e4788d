"""spark-submit entry point: `spark-submit jobs/export.py --conf conf/local.yaml --segments all|ID,... [--set key=value ...]`."""
import sys

from persona.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
