"""Tests for `evaluation.geometry` against NumPy loops and integration."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import evaluation


def _random_features(seed, n=80, dim=6):
  rng = np.random.default_rng(seed)
  # Non-contiguous label values, unequal class sizes.
  labels = rng.choice(np.array([3, 7, 10, 42]), size=n, p=[0.4, 0.3, 0.2, 0.1])
  centres = {3: 0.0, 7: 2.0, 10: -1.5, 42: 4.0}
  offsets = np.array([centres[label] for label in labels])
  embeddings = rng.normal(size=(n, dim)) + offsets[:, None]
  return embeddings, labels


# ---------------------------------------------------------------------------
# References, from the definitions, one class and one sample at a time.
# ---------------------------------------------------------------------------


def _unit(v):
  return v / np.linalg.norm(v)


def _reference_centres(embeddings, labels, metric):
  centres = {}
  for label in sorted(set(labels.tolist())):
    rows = [embeddings[i] for i in range(len(labels)) if labels[i] == label]
    if metric == 'euclidean':
      centres[label] = np.mean(rows, axis=0)
    else:
      centres[label] = _unit(np.mean([_unit(row) for row in rows], axis=0))
  return centres


def _reference_compactness(embeddings, labels, metric):
  centres = _reference_centres(embeddings, labels, metric)
  per_class = []
  for label, centre in centres.items():
    values = []
    for i in range(len(labels)):
      if labels[i] != label:
        continue
      if metric == 'euclidean':
        values.append(np.sqrt(np.sum((embeddings[i] - centre) ** 2)))
      else:
        values.append(1.0 - _unit(embeddings[i]) @ centre)
    per_class.append(np.mean(values))
  return np.array(per_class)


def _reference_separability(embeddings, labels, metric):
  centres = list(_reference_centres(embeddings, labels, metric).values())
  count = len(centres)
  pairwise = np.zeros((count, count))
  for c, j in itertools.product(range(count), repeat=2):
    if c == j:
      continue
    if metric == 'euclidean':
      pairwise[c, j] = np.sqrt(np.sum((centres[c] - centres[j]) ** 2))
    else:
      pairwise[c, j] = 1.0 - centres[c] @ centres[j]
  nearest = [
    min(pairwise[c, j] for j in range(count) if j != c) for c in range(count)
  ]
  pairs = [pairwise[c, j] for c in range(count) for j in range(c + 1, count)]
  return pairwise, np.array(nearest), np.mean(pairs), np.min(pairs)


# ---------------------------------------------------------------------------
# Empirical measures.
# ---------------------------------------------------------------------------


def test_hand_example():
  # Class 0: (0,0) and (2,0): mean (1,0), distances 1 and 1 -> 1.
  # Class 1: (0,4), (0,6), (3,5): mean (1,5), distances sqrt2, sqrt2, 2.
  # Class means are sqrt(0 + 25) = 5 apart.
  embeddings = np.array(
    [[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0], [3.0, 5.0]]
  )
  labels = np.array([0, 0, 1, 1, 1])
  compactness = evaluation.intra_class_compactness(embeddings, labels)
  np.testing.assert_allclose(
    compactness.per_class, [1.0, (2 * math.sqrt(2) + 2) / 3]
  )
  assert compactness.mean == pytest.approx((1 + (2 * math.sqrt(2) + 2) / 3) / 2)
  separability = evaluation.inter_class_separability(embeddings, labels)
  np.testing.assert_allclose(separability.per_class, [5.0, 5.0])
  np.testing.assert_allclose(separability.pairwise, [[0.0, 5.0], [5.0, 0.0]])
  assert separability.mean == pytest.approx(5.0)
  assert separability.minimum == pytest.approx(5.0)
  np.testing.assert_array_equal(separability.classes, [0, 1])


@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
def test_compactness_matches_loops(metric):
  embeddings, labels = _random_features(0)
  result = evaluation.intra_class_compactness(embeddings, labels, metric=metric)
  expected = _reference_compactness(embeddings, labels, metric)
  np.testing.assert_array_equal(result.classes, [3, 7, 10, 42])
  np.testing.assert_allclose(result.per_class, expected, rtol=1e-12)
  assert result.mean == pytest.approx(np.mean(expected), rel=1e-12)


@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
def test_separability_matches_loops(metric):
  embeddings, labels = _random_features(1)
  result = evaluation.inter_class_separability(
    embeddings, labels, metric=metric
  )
  pairwise, nearest, mean, minimum = _reference_separability(
    embeddings, labels, metric
  )
  np.testing.assert_allclose(result.pairwise, pairwise, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(result.per_class, nearest, rtol=1e-12)
  assert result.mean == pytest.approx(mean, rel=1e-12)
  assert result.minimum == pytest.approx(minimum, rel=1e-12)


@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
def test_ratio_matches_loops_and_is_scale_free(metric):
  embeddings, labels = _random_features(2)
  ratio = evaluation.separability_ratio(embeddings, labels, metric=metric)
  _, _, mean, _ = _reference_separability(embeddings, labels, metric)
  expected = mean / np.mean(_reference_compactness(embeddings, labels, metric))
  assert ratio == pytest.approx(expected, rel=1e-12)
  scaled = evaluation.separability_ratio(
    37.0 * embeddings, labels, metric=metric
  )
  assert scaled == pytest.approx(ratio, rel=1e-10)


def test_feature_geometry_collects_every_scalar():
  embeddings, labels = _random_features(3)
  result = evaluation.feature_geometry(embeddings, labels)
  for metric, prefix in (('euclidean', ''), ('cosine', 'cosine_')):
    compactness = np.mean(_reference_compactness(embeddings, labels, metric))
    _, _, mean, minimum = _reference_separability(embeddings, labels, metric)
    assert result[f'{prefix}compactness'] == pytest.approx(compactness)
    assert result[f'{prefix}separability'] == pytest.approx(mean)
    assert result[f'{prefix}min_separability'] == pytest.approx(minimum)
    assert result[f'{prefix}ratio'] == pytest.approx(mean / compactness)
  assert len(result) == 8


def test_class_means():
  embeddings, labels = _random_features(4)
  classes, means, counts = evaluation.class_means(embeddings, labels)
  for label, mean, count in zip(classes, means, counts, strict=True):
    np.testing.assert_allclose(mean, embeddings[labels == label].mean(axis=0))
    assert count == np.sum(labels == label)


def test_float32_in_float32_out_and_bfloat16_in_float32():
  embeddings, labels = _random_features(5)
  result = evaluation.intra_class_compactness(
    embeddings.astype(np.float32), labels
  )
  assert result.per_class.dtype == np.float32
  np.testing.assert_allclose(
    result.per_class,
    _reference_compactness(embeddings, labels, 'euclidean'),
    rtol=1e-5,
  )
  result = evaluation.inter_class_separability(
    jnp.asarray(embeddings, jnp.bfloat16), jnp.asarray(labels)
  )
  assert result.per_class.dtype == np.float32


def test_single_sample_class_and_collapsed_classes():
  embeddings = np.array([[1.0, 1.0], [5.0, 5.0], [5.0, 5.0]])
  labels = np.array([0, 1, 1])
  compactness = evaluation.intra_class_compactness(embeddings, labels)
  np.testing.assert_array_equal(compactness.per_class, [0.0, 0.0])
  assert evaluation.separability_ratio(embeddings, labels) == float('inf')


@pytest.mark.parametrize(
  ('embeddings', 'labels', 'kwargs', 'error', 'name'),
  [
    (np.zeros((4, 2)), np.zeros(3, int), {}, ValueError, 'labels'),
    (np.zeros(4), np.zeros(4, int), {}, ValueError, 'embeddings'),
    (np.zeros((4, 2)), np.zeros((4, 1), int), {}, ValueError, 'labels'),
    (np.zeros((4, 2), int), np.zeros(4, int), {}, TypeError, 'embedd'),
    (np.zeros((4, 2)), np.zeros(4), {}, TypeError, 'labels'),
    (np.ones((4, 2)), np.zeros(4, int), {}, ValueError, 'labels'),
    (
      np.ones((4, 2)),
      np.arange(4),
      {'metric': 'l1'},
      ValueError,
      'metric',
    ),
  ],
)
def test_separability_rejects_bad_input(
  embeddings, labels, kwargs, error, name
):
  with pytest.raises(error, match=name):
    evaluation.inter_class_separability(embeddings, labels, **kwargs)


# ---------------------------------------------------------------------------
# G-softmax's Gaussian measures.
# ---------------------------------------------------------------------------


def _kl_by_quadrature(mu_p, sigma_p, mu_q, sigma_q):
  def integrand(x):
    log_p = -0.5 * ((x - mu_p) / sigma_p) ** 2 - math.log(
      sigma_p * math.sqrt(2 * math.pi)
    )
    log_q = -0.5 * ((x - mu_q) / sigma_q) ** 2 - math.log(
      sigma_q * math.sqrt(2 * math.pi)
    )
    return math.exp(log_p) * (log_p - log_q)

  value, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12)
  return value


@pytest.mark.parametrize(
  ('mu_p', 'sigma_p', 'mu_q', 'sigma_q'),
  [(0.0, 1.0, 1.0, 2.0), (-0.5, 0.3, 0.4, 1.1), (2.0, 1.5, 2.0, 1.5)],
)
def test_gaussian_kl_matches_numerical_integration(
  mu_p, sigma_p, mu_q, sigma_q
):
  kl = evaluation.gaussian_kl(mu_p, sigma_p, mu_q, sigma_q)
  expected = _kl_by_quadrature(mu_p, sigma_p, mu_q, sigma_q)
  assert float(kl) == pytest.approx(expected, abs=1e-9)


def test_gaussian_separability_and_compactness_match_loops():
  mu = np.array([0.0, 0.5, -1.0, 2.0])
  sigma = np.array([1.0, 0.4, 2.0, 0.8])
  count = len(mu)
  expected = np.zeros(count)
  for k in range(count):
    for j in range(count):
      if j != k:
        expected[k] += _kl_by_quadrature(
          mu[k], sigma[k], mu[j], sigma[j]
        ) + _kl_by_quadrature(mu[j], sigma[j], mu[k], sigma[k])
    expected[k] /= 2 * (count - 1)
  np.testing.assert_allclose(
    evaluation.gaussian_separability(mu, sigma), expected, rtol=1e-8
  )
  np.testing.assert_allclose(evaluation.gaussian_compactness(sigma), 1 / sigma)


def test_gaussian_separability_is_zero_for_identical_gaussians():
  result = evaluation.gaussian_separability(np.zeros(3), np.ones(3))
  np.testing.assert_array_equal(result, np.zeros(3))


@pytest.mark.parametrize(
  ('mu', 'sigma', 'error', 'name'),
  [
    (np.zeros(3), np.array([1.0, 0.0, 1.0]), ValueError, 'sigma'),
    (np.zeros(2), np.ones(3), ValueError, 'mu'),
    (np.zeros((3, 1)), np.ones(3), ValueError, 'mu'),
    (np.zeros(1), np.ones(1), ValueError, 'sigma'),
    (np.zeros(3), np.ones(3, int), TypeError, 'sigma'),
  ],
)
def test_gaussian_measures_reject_bad_input(mu, sigma, error, name):
  with pytest.raises(error, match=name):
    evaluation.gaussian_separability(mu, sigma)
