"""Helper h39d: how scoring tells a model's recorded encoder that is no built-in card.

``scoring_encoder.check_recorded_card`` (and ``load_scoring_encoder``) decided whether to say "the model
... has no encoder/ folder (copied without it ...)" by finding the text "unknown encoder" in the card
lookup's message: a reworded message ("no card named 'x'") would have turned that advice into the bare
lookup error, and any other error that happened to say "unknown encoder" into the folder advice. Now they
decide on the class :class:`~weakstil.encoders.cards.UnknownEncoderNameError` (a bare name that is no
built-in card), raised only where the message said it; what a user reads is unchanged.
"""

from __future__ import annotations

import pytest

from weakstil.errors import WeakSTILError

NO_FOLDER = "not a built-in one, and has no encoder/ folder"


def _opts(tmp_path):
    from weakstil.score import ScoreOptions

    (tmp_path / "model").mkdir(exist_ok=True)  # no encoder/ bundled
    return ScoreOptions(model=tmp_path / "model", out=tmp_path / "out")


def test_a_recorded_name_that_is_no_card_says_the_encoder_folder_is_missing(tmp_path):
    from weakstil.encoders.cards import UnknownEncoderError, load_card
    from weakstil.scoring_encoder import check_recorded_card, load_scoring_encoder

    with pytest.raises(UnknownEncoderError, match="unknown encoder 'my-pretrained'") as info:
        load_card("my-pretrained")
    assert type(info.value).__name__ == "UnknownEncoderNameError"  # (old: UnknownEncoderError, told by its text)
    opts, meta = _opts(tmp_path), {"encoder": {"name": "my-pretrained", "weights_sha256": "ab" * 32}}
    for check in (check_recorded_card, load_scoring_encoder):  # behaviour kept: the folder's advice
        with pytest.raises(WeakSTILError, match=NO_FOLDER):
            check(opts, meta)
    # a card path that is not there is another mistake: its own error, as before
    with pytest.raises(UnknownEncoderError, match="no such card file"):
        check_recorded_card(opts, {"encoder": {"name": "cards/missing.yaml"}})
    check_recorded_card(opts, {"encoder": {"name": "small-cnn"}})  # a built-in card: nothing to say


def test_the_decision_follows_the_error_class_not_its_words(tmp_path, monkeypatch):
    from weakstil.encoders import cards
    from weakstil.encoders.cards import UnknownEncoderError, UnknownEncoderNameError  # (old: no such class)
    from weakstil.scoring_encoder import check_recorded_card

    opts, meta = _opts(tmp_path), {"encoder": {"name": "my-pretrained"}}

    def reworded(name):
        raise UnknownEncoderNameError(f"no card is named {name!r}", path=None)

    monkeypatch.setattr(cards, "load_card", reworded)
    with pytest.raises(WeakSTILError, match=NO_FOLDER):  # a reworded message keeps the advice
        check_recorded_card(opts, meta)

    def other(name):
        raise UnknownEncoderError(f"unknown encoder card field in {name!r}", path=None)

    monkeypatch.setattr(cards, "load_card", other)
    with pytest.raises(UnknownEncoderError, match="card field"):  # the words alone do not make it the folder's
        check_recorded_card(opts, meta)
