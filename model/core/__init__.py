"""The A3 math: two-stream forward, groupings, the model object, decoding, sampling, infill layout, checkpoint I/O."""
