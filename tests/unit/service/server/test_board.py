"""The workers' shared board: slots, the first readiness of the service, and memory shared across a fork."""

import os

import pytest

from vectorizer_module.server.board import WorkerBoard


def test_the_service_is_ready_once_every_worker_has_loaded_and_stays_so_while_one_is_replaced():
    board = WorkerBoard(2)
    first, second = board.claim_slot(), board.claim_slot()
    assert {first, second} == {0, 1}
    assert board.peers_loading() == "the model is still loading in 2 of 2 workers"
    board.mark_loaded(first)
    assert board.peers_loading() == "the model is still loading in 1 of 2 workers"
    assert not board.started()
    board.mark_loaded(second)
    assert board.started() and board.peers_loading() is None
    board.clear_slot(second)  # that worker died; its replacement gets its slot
    assert board.claim_slot() == second
    assert board.peers_loading() is None, "the service stopped being ready while a replacement loads"


def test_every_slot_is_given_once_unless_its_worker_is_gone_unreported():
    board = WorkerBoard(2)
    first, second = board.claim_slot(), board.claim_slot()
    board.take_slot(first)  # our pid stands for a worker that runs
    board.waiting_cells()[first] = 3
    with pytest.raises(RuntimeError, match="2 worker slots"):
        board.claim_slot(live={os.getpid()})
    assert board.claim_slot(live=set()) == first  # its worker is not among the arbiter's workers
    assert list(board.waiting_cells()) == [0, 0]  # and what it said no longer holds
    assert second != first


def test_what_a_forked_worker_writes_the_others_read():
    board = WorkerBoard(2)
    slot = board.claim_slot()
    assert slot == 0
    pid = os.fork()
    if pid == 0:  # the worker: mark its model loaded and count two waiting items, then leave at once
        board.take_slot(slot)
        board.mark_loaded(slot)
        board.waiting_cells()[slot] = 2
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.loaded() == 1
    assert list(board.waiting_cells()) == [2, 0]
