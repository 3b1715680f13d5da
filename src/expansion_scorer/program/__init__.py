"""The program, below the stages that read it: which candidates each weekly run held out (the
capacity-list rule and the draw), what every run said and sent, what happened to each
assignment once its horizon closed, the measurement of the program, and the simulated loop.

The weekly run (`jobs.score`) writes the record; measurement (`jobs.measure`) and the uplift model
(`jobs.uplift`) read it.
"""
