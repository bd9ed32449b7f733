r"""insightface's IResNet in PyTorch and ours, loaded from the same file.

The PyTorch network is written here from insightface's description of
``recognition/arcface_torch/backbones/iresnet.py`` (its module names, so
its ``state_dict`` is arcface_torch's): a 3x3/1 stem with BatchNorm and
PReLU; stages of 64, 128, 256, 512 filters, each starting with stride 2,
of blocks BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN plus the
shortcut (``downsample``: conv1x1 (stride) + BN where the shape changes);
then BN, flatten, dropout (0), Linear to 512 and a BatchNorm1d with its
weight fixed at 1. Every BatchNorm gets random running statistics and
biases (scales too, except the fixed one), every PReLU random slopes, the
``state_dict`` goes to a safetensors file, `models.iresnet_weights.
load_iresnet` places it into our `IResNet`, and both embed the same random
112x112 faces in evaluation mode, float32.

Errors: "max abs" is the largest ``|ours - torch|``; "max rel" the largest
over images of ``max_j |ours_j - torch_j| / max_j |torch_j|``. "agree":
max rel <= 1e-4.

Torch is no dependency of discfeat: ``make bench-pretrained`` runs this in
``.venv-pml``. ``--depths=18,34,50,100`` picks the depths (default 18,50).
"""

import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import models
from models import iresnet_weights

_LAYERS = {
  18: (2, 2, 2, 2),
  34: (3, 4, 6, 3),
  50: (3, 4, 14, 3),
  100: (3, 13, 30, 3),
}
_TOLERANCE = 1e-4


def _torch_iresnet(depth):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  def conv(cin, cout, kernel, stride):
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
      self.conv1 = conv(cin, cout, 3, 1)
      self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
      self.prelu = nn.PReLU(cout)
      self.conv2 = conv(cout, cout, 3, stride)
      self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(
          conv(cin, cout, 1, stride), nn.BatchNorm2d(cout, eps=1e-5)
        )

    def forward(self, x):
      y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
      return y + (x if self.downsample is None else self.downsample(x))

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = conv(3, 64, 3, 1)
      self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
      self.prelu = nn.PReLU(64)
      cin = 64
      for index, (blocks, cout) in enumerate(
        zip(_LAYERS[depth], (64, 128, 256, 512), strict=True)
      ):
        layer = []
        for block in range(blocks):
          layer.append(Block(cin, cout, 2 if block == 0 else 1))
          cin = cout
        setattr(self, f'layer{index + 1}', nn.Sequential(*layer))
      self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
      self.dropout = nn.Dropout(p=0.0)
      self.fc = nn.Linear(512 * 7 * 7, 512)
      self.features = nn.BatchNorm1d(512, eps=1e-5)
      nn.init.constant_(self.features.weight, 1.0)

    def forward(self, x):
      x = self.prelu(self.bn1(self.conv1(x)))
      for index in range(4):
        x = getattr(self, f'layer{index + 1}')(x)
      x = self.dropout(torch.flatten(self.bn2(x), 1))
      return self.features(self.fc(x))

  generator = torch.Generator().manual_seed(depth)
  net = Net()
  with torch.no_grad():
    for name, module in net.named_modules():
      if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        size = module.num_features
        module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
        module.bias.copy_(0.1 * torch.randn(size, generator=generator))
        if name != 'features':
          module.weight.copy_(0.5 + torch.rand(size, generator=generator))
      elif isinstance(module, nn.PReLU):
        module.weight.copy_(
          0.5 * torch.rand(module.weight.shape, generator=generator)
        )
      elif isinstance(module, nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.normal_(0, (1.0 / fan_in) ** 0.5, generator=generator)
  return net.eval()


def _check(depth, directory):
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  net = _torch_iresnet(depth)
  path = os.path.join(directory, f'iresnet{depth}.safetensors')
  safetensors.torch.save_file(
    {k: v.contiguous() for k, v in net.state_dict().items()}, path
  )
  model = models.get_model(f'iresnet{depth}')
  shapes = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 112, 112, 3)), train=False
    )
  )
  params, batch_stats = iresnet_weights.load_iresnet(
    path, params=shapes['params'], batch_stats=shapes['batch_stats']
  )
  images = np.random.default_rng(depth).uniform(-1, 1, (4, 112, 112, 3))
  images = images.astype(np.float32)
  start = time.perf_counter()
  ours = np.asarray(
    jax.jit(lambda v, x: model.apply(v, x, train=False))(
      {'params': params, 'batch_stats': batch_stats}, images
    )
  )
  ours_s = time.perf_counter() - start
  with torch.no_grad():
    reference = net(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  difference = np.abs(ours - reference)
  relative = np.max(difference, axis=1) / np.max(np.abs(reference), axis=1)
  return {
    'model': f'iresnet{depth}',
    'max abs': float(difference.max()),
    'max rel': float(relative.max()),
    'agree': bool(relative.max() <= _TOLERANCE),
    'ours s (compile incl.)': ours_s,
  }


def main(argv):
  depths = (18, 50)
  for arg in argv[1:]:
    if arg.startswith('--depths='):
      depths = tuple(int(d) for d in arg.split('=', 1)[1].split(','))
  import torch  # pylint: disable=g-import-not-at-top

  print(
    f'# IResNet parity: {platform.processor() or platform.machine()}, '
    f'jax {jax.__version__}, torch {torch.__version__}, '
    f'{time.strftime("%Y-%m-%d")}'
  )
  print('| model | max abs | max rel | agree |')
  print('|---|---|---|---|')
  failed = False
  with tempfile.TemporaryDirectory() as directory:
    for depth in depths:
      row = _check(depth, directory)
      failed |= not row['agree']
      print(
        f'| {row["model"]} | {row["max abs"]:.2e} | {row["max rel"]:.2e} '
        f'| {"yes" if row["agree"] else "NO"} |'
      )
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
