"""spark-submit entry point: `spark-submit jobs/forget.py --conf conf/local.yaml --ids FILE [--set key=value ...]`."""
import sys

from persona.cli import main

if __name__ == "__main__":
    sys.exit(main(["forget", *sys.argv[1:]]))
