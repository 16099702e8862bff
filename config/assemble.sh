#!/bin/sh
# Rebuilds config/pvtherm.toml from the per-section snippets (each module's
# tests parse its own snippet; a test checks the assembled file is current).
cd "$(dirname "$0")/snippets" && cat head.toml source.v4l2.toml source.replay.toml model.toml analysis.toml \
  render.toml pipeline.toml mqtt.toml outbox.toml broker.toml homeassistant.toml control.toml http.toml > ../pvtherm.toml
