"""The pipeline's stages, in order. Each is ``run(ctx) -> dict`` of what it measured."""
from persona.stages import embed, features, ingest, segment, train

STAGES = {
    "ingest": ingest.run,
    "features": features.run,
    "train": train.run,
    "embed": embed.run,
    "segment": segment.run,
}
