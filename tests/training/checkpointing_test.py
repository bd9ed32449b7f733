"""What a checkpoint's config identity holds."""

from configs import tiny
from training import checkpointing


def test_bnneck_off_matches_checkpoints_written_before_it_existed():
  identity = checkpointing.config_identity
  config = tiny.get_config()
  assert config.model.bnneck is False
  older = tiny.get_config()
  del older.model['bnneck']  # A config of before config.model.bnneck.
  assert identity(config) == identity(older)
  assert 'bnneck' not in identity(config)['model']
  config.model.bnneck = True
  assert identity(config) != identity(older)
  assert identity(config)['model']['bnneck'] is True
