"""spark-submit entry point: `spark-submit jobs/report.py --conf conf/local.yaml [--set key=value ...]`."""
import sys

from persona.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
