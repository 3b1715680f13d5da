"""The program's record: which candidates each weekly run held out, what every run said, and
what happened to each assignment once its horizon closed.

The weekly run (`serving.job`) writes it; measurement (`program.measure`) and the uplift model
(`training.uplift_job`) read it, so it sits below both stages.
"""
