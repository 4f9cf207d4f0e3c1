"""Reinforcement learning (SPEC §11): environments, tabular MDPs and value iteration,
Q-learning and DQN as pure epoch functions that lexicon.train runs.

- ``envs``: gymnax environments by short name, a grid world with closed-form Q*, vectorized
  stepping that keeps truncations apart from terminations.
- ``tabular``: outcome tables read off the environment, value iteration, exact evaluation.
- ``qlearning``: the tabular update, epsilon-greedy with decay, the epoch function.
- ``replay``: a FIFO ring buffer on the device with uniform sampling.
- ``dqn``: Q-network, target network, Double DQN, the epoch function.
"""
