"""The files of a silo's folder, by name.

The ClientApp imports this module on every message Flower hands it, so it imports
nothing.
"""

TRAIN_FILE = "train.npz"  # the encoded members, holdout and test rows
SETTINGS_FILE = "training.json"  # the local training settings and the planned epochs
DP_STATE_FILE = "dp_state.json"  # the silo's accounting so far, written before an update leaves
NODE_FILE = "node.json"  # the silo's Flower node ID in the current run
