"""The pipeline's stages. Each module has ``HELP`` (one line) and ``run(ctx)``; a stage
that runs only when configured also has ``enabled(config) -> bool``."""
from persona.stages import embed, evaluate, features, ingest, report, segment, tag, train

# Order of `persona run`; every stage is also its own command.
PIPELINE = {
    "ingest": ingest,
    "features": features,
    "train": train,
    "embed": embed,
    "segment": segment,
    "tag": tag,
}


def enabled(module, config) -> bool:
    """Whether `persona run` runs this stage with this configuration."""
    check = getattr(module, "enabled", None)
    return check(config) if check else True


# Every command that runs on the lake: the pipeline's stages and the ones outside it.
STAGES = {**PIPELINE, "evaluate": evaluate, "report": report}
