import numpy as np

from calf import CALFController, pd_nominal_policy


def test_batch_call_makes_one_actor_and_one_critic_forward():
    ctrl = CALFController(2, 1, 5.0, pd_nominal_policy(), seed=0)
    ctrl.select_action_batch(np.zeros((7, 2)) + 1.0)
    counter = ctrl.td3.forward_counter
    assert counter.count(module="actor") == 1
    assert counter.count(module="critic") == 1
