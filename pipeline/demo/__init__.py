"""The bundled demo: tutorial-like videos with ground truth, a step folder, SVG and stroke drawings."""
