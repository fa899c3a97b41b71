# Type stubs of the compiled core. Regenerate after changing a binding with:
#   pybind11-stubgen pynn._core -o /tmp/stubs && cp /tmp/stubs/pynn/_core.pyi pynn/
# (tests/test_package.py checks that every public name of the module is listed here)
"""
pynn's compiled core (private: use pynn.ops and the model API)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['Graph', 'Network', 'activation_backward', 'activation_defaults', 'activation_descriptors', 'activation_forward', 'activation_names', 'activation_params', 'arch', 'arch_error', 'batchnorm_backward', 'batchnorm_forward_infer', 'batchnorm_forward_train', 'clip_scale', 'column_sums', 'compute_fans', 'cpu_supports', 'dense_backward', 'dense_forward', 'dropout_backward', 'dropout_forward', 'first_non_finite', 'gemm', 'gemm_prepacked_b', 'gemm_sparse_calls', 'gemm_sparse_mode', 'gemm_threads', 'get_num_threads', 'initializer_fill', 'initializer_names', 'kernel_info', 'l1_l2_penalty', 'loss_config', 'loss_descriptors', 'loss_names', 'loss_value_grad', 'measure_fma_peak', 'optimizer_apply', 'optimizer_begin_step', 'optimizer_config', 'optimizer_descriptors', 'optimizer_slot_names', 'optimizer_slots', 'optimizer_update', 'pool_info', 'prelu_backward', 'prelu_forward', 'rrelu_backward', 'rrelu_forward', 'set_gemm_sparse', 'set_num_threads', 'softmax_backward', 'softmax_forward', 'sbgemm', 'sbgemm_info', 'sbgemm_prepacked_b', 'sum_of_squares']
class Network:
    def __init__(self, input_width: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def add_activation(self, activation: str, act_params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], seed: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
        ...
    def add_batchnorm(self, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, center: bool, scale: bool) -> int:
        ...
    def add_dense(self, units: typing.SupportsInt | typing.SupportsIndex, activation: str = 'linear', act_params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], use_bias: bool = True) -> int:
        ...
    def add_dropout(self, rate: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def add_prelu(self) -> int:
        ...
    def get_grad(self, i: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def get_param(self, i: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def get_slot(self, i: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def input_gradient(self, x: numpy.ndarray, seed: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def last_output(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def num_params(self) -> int:
        ...
    def num_slots(self, i: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def param_info(self, i: typing.SupportsInt | typing.SupportsIndex) -> tuple[str, list[int], bool]:
        ...
    def predict(self, x: numpy.ndarray, out: numpy.ndarray, chunk: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
        ...
    def set_frozen(self, i: typing.SupportsInt | typing.SupportsIndex, frozen: bool) -> None:
        """
        Frozen parameters keep their values in training (Keras trainable=False); takes effect at the next set_optimizer.
        """
    def set_loss(self, kind: str, from_logits: bool = False, delta: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
    def set_optimizer(self, kind: str, cfg: typing.Any = None) -> None:
        """
        Sets the optimizer: Keras defaults of `kind` overridden by the dict `cfg` (checked like optimizer_config); resets iterations and slots.
        """
    def set_param(self, i: typing.SupportsInt | typing.SupportsIndex, value: numpy.ndarray) -> None:
        ...
    def set_regularization(self, i: typing.SupportsInt | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, l2: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def set_slot(self, i: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex, value: numpy.ndarray) -> None:
        ...
    def test_step(self, x: numpy.ndarray, y: typing.Any, labels: typing.Any, sample_weight: typing.Any, idx: typing.Any, want_output: bool = False) -> tuple:
        """
        The loss of the rows idx (all if None) in inference mode; returns (loss, correct, output or None).
        """
    def train_step(self, x: numpy.ndarray, y: typing.Any, labels: typing.Any, sample_weight: typing.Any, idx: typing.Any, want_output: bool = False) -> tuple:
        """
        One training step (forward, loss, backward, update) on the rows idx (all if None); returns (batch loss, correct rows, output probabilities or None).
        """
    @property
    def input_width(self) -> int:
        ...
    @property
    def iterations(self) -> int:
        ...
    @iterations.setter
    def iterations(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def learning_rate(self) -> float:
        ...
    @learning_rate.setter
    def learning_rate(self, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def output_width(self) -> int:
        ...
    @property
    def u_product(self) -> float:
        ...
    @u_product.setter
    def u_product(self, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class Graph:
    """
    The N-D graph engine of functional models: tensors, parameters (the caller's float32 arrays, used in place) and nodes in topological order.
    """
    def __init__(self) -> None:
        ...
    def add_input(self, shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> int:
        """
        Adds a graph input of this per-sample shape; returns its tensor id.
        """
    def add_node(self, op: str, inputs: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], params: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], attrs: dict, name: str = '') -> list[int]:
        """
        Adds a node reading existing tensors; checks shapes; returns its output tensor ids.
        """
    def add_param(self, value: typing.Any, name: str, trainable: bool = True) -> int:
        """
        Adds a parameter: the array itself (float32, C-contiguous, writeable), read and written in place; returns its id.
        """
    def get_grad(self, pid: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        """
        A copy of the parameter's gradient from the last training step (zeros for state parameters, which have none).
        """
    def get_slot(self, pid: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def input_gradient(self, xs: typing.Any, seeds: typing.Any) -> list:
        """
        d(sum_j sum(out_j * seeds[j])) / d xs[i] in inference mode, one array per input.
        """
    def forward_train(self, xs: typing.Any, call: int) -> list: ...
    def dense_chain_layers(self) -> int:
        """
        How many dense layers predict runs as one fused chain (0: the general path).
        """
    def memory_info(self) -> dict:
        """
        Bytes used: the arenas of each mode at `capacity` rows (the largest batch seen), parameters, gradients, optimizer slots.
        """
    def num_params(self) -> int:
        ...
    def num_slots(self, pid: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def param_info(self, pid: typing.SupportsInt | typing.SupportsIndex) -> tuple[str, list[int], bool]:
        """
        (name, shape, trainable flag) of a parameter.
        """
    def predict(self, xs: typing.Any, outs: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 1024) -> None:
        """
        Inference on every row of xs, in chunks of `chunk` rows; writes outs[j].
        """
    def predict_array(self, x: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 256) -> typing.Any:
        """
        For a graph of one input and one output: its output on the rows of x (a new float32 array), or None when x is not a C-contiguous float32 array of rows of the input's shape (the caller converts it and calls predict).
        """
    def set_losses(self, losses: typing.Any) -> None:
        ...
    def set_optimizer(self, kind: str, cfg: typing.Any = None) -> None:
        """
        Sets the optimizer: Keras defaults of `kind` overridden by the dict `cfg` (checked like optimizer_config); resets iterations and allocates slots for every parameter that can learn, frozen or not.
        """
    def set_outputs(self, tids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def set_regularization(self, pid: typing.SupportsInt | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, l2: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def set_slot(self, pid: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex, arr: numpy.ndarray) -> None:
        ...
    def set_trainable(self, pid: typing.SupportsInt | typing.SupportsIndex, trainable: bool) -> None:
        """
        Freezes (False) or unfreezes a parameter; takes effect at the next step.
        """
    def tensor_shape(self, tid: typing.SupportsInt | typing.SupportsIndex) -> tuple:
        ...
    def test_step(self, xs: typing.Any, ys: typing.Any, sample_weights: typing.Any = None, idx: typing.Any = None, want_outputs: bool = False) -> tuple:
        """
        The losses of the rows idx (all if None) in inference mode, without an update.
        """
    def train_step(self, xs: typing.Any, ys: typing.Any, sample_weights: typing.Any = None, idx: typing.Any = None, want_outputs: bool = False) -> tuple:
        """
        One training step on the rows idx (all if None): forward, losses, backward, update. Returns (total loss, per-output losses, per-output correct counts, outputs or None).
        """
    def train_steps(self, xs: typing.Any, ys: typing.Any, sample_weights: typing.Any, order: typing.Any, batch_size: int) -> tuple:
        """
        Training steps on the rows `order` taken batch_size at a time (the last batch shorter), each as train_step. Returns (totals, losses, correct): per step the total loss, and per step and output the loss and the correct count.
        """
    @property
    def iterations(self) -> int:
        ...
    @iterations.setter
    def iterations(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def learning_rate(self) -> float:
        ...
    @learning_rate.setter
    def learning_rate(self, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def u_product(self) -> float:
        ...
    @u_product.setter
    def u_product(self, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
def activation_backward(z: numpy.ndarray, y: numpy.ndarray, dy: numpy.ndarray, dz: numpy.ndarray, name: str, params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = []) -> numpy.ndarray:
    """
    dz = dy * f'(z) for the named activation (y = f(z) must be given too); dz may be dy.
    """
def activation_defaults(name: str) -> list[float]:
    """
    The default parameters of the named activation (nparams floats).
    """
def activation_descriptors() -> list:
    """
    The activation table: one dict per activation with its name, whether it is element-wise (all but softmax), its parameters in the order the kernel takes them (name, type, default, valid range), its aliases and the rule between its two parameters, if any.
    """
def activation_forward(x: numpy.ndarray, name: str, params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = []) -> numpy.ndarray:
    """
    Applies the activation in place to a C-contiguous float32 array and returns it.
    """
def activation_names() -> list[str]:
    """
    The element-wise activations (softmax, row-wise, is not among them).
    """
def activation_params(name: str, params: typing.Any = None) -> list[float]:
    """
    The parameters (in the kernel's order) of the named activation: its defaults overridden by the dict `params` of Keras parameter names; unknown names, wrong types and values out of range raise naming the parameter and its valid range.
    """
def arch() -> str:
    ...
def arch_error() -> str:
    """
    Why PYNN_ARCH could not be honoured ('' when it was).
    """
def batchnorm_backward(dy: numpy.ndarray, xhat: numpy.ndarray, inv_std: numpy.ndarray, gamma: numpy.ndarray) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    Backward of batchnorm_forward_train. Returns (dx, dgamma, dbeta).
    """
def batchnorm_forward_infer(x: numpy.ndarray, gamma: numpy.ndarray, beta: numpy.ndarray, moving_mean: numpy.ndarray, moving_var: numpy.ndarray, epsilon: typing.SupportsFloat | typing.SupportsIndex = 0.0010000000474974513) -> numpy.typing.NDArray[numpy.float32]:
    """
    Batch normalisation with the moving statistics (inference).
    """
def batchnorm_forward_train(x: numpy.ndarray, gamma: numpy.ndarray, beta: numpy.ndarray, moving_mean: numpy.ndarray, moving_var: numpy.ndarray, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.9900000095367432, epsilon: typing.SupportsFloat | typing.SupportsIndex = 0.0010000000474974513) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    Batch normalisation with batch statistics. Returns (y, xhat, inv_std); moving_mean and moving_var are updated in place.
    """
def clip_scale(norm: typing.SupportsFloat | typing.SupportsIndex, max_norm: typing.SupportsFloat | typing.SupportsIndex) -> float:
    """
    The factor that brings a gradient of the given norm within max_norm.
    """
def column_sums(x: numpy.ndarray, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float32]:
    """
    Sums of the columns of a C-contiguous float32 (n, c) array, rows added in order.
    """
def compute_fans(shape: typing.Any) -> tuple[int, int]:
    """
    Keras's (fan_in, fan_out) of a weight shape.
    """
def cpu_supports(name: str) -> bool:
    """
    Whether this CPU runs the named instruction set (generic, avx2, avx512, avx512_bf16, amx).
    """
def dense_backward(x: numpy.ndarray, W: numpy.ndarray, z: numpy.ndarray | None, y: numpy.ndarray, dy: numpy.ndarray, activation: str = 'linear', params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], compute_dx: bool = True, overwrite_dy: bool = False, dW_out: numpy.ndarray | None = None, db_out: numpy.ndarray | None = None, accumulate: bool = False, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple[typing.Any, numpy.ndarray, numpy.ndarray]:
    """
    Backward of dense_forward. Returns (dx or None, dW, db). dz = dy * act'(z) is written into dy when overwrite_dy (else into a copy). dW/db go to dW_out/db_out when given, added to their contents when accumulate.
    """
def dense_forward(x: numpy.ndarray, W: numpy.ndarray, b: numpy.ndarray | None = None, activation: str = 'linear', params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], save_z: bool = True, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple[numpy.typing.NDArray[numpy.float32], typing.Any]:
    """
    y = act(x @ W + b) in one fused GEMM. Returns (y, z) with z = x @ W + b (None unless save_z). x (n, in), W (in, out), b (out,) or None.
    """
def dropout_backward(dy: numpy.ndarray, mask: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
    """
    dx = dy * mask.
    """
def dropout_forward(x: numpy.ndarray, rate: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    Inverted dropout. Returns (y, mask), mask holding 1/(1-rate) for kept elements and 0 for dropped ones; element i of the mask depends only on (seed, stream, i).
    """
def gemm(a: numpy.ndarray, b: numpy.ndarray, out: numpy.ndarray, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, bias: numpy.ndarray | None = None, activation: str = 'linear', act_params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], preact: numpy.ndarray | None = None, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.ndarray:
    """
    out = act(alpha * a @ b + beta * out + bias); a, b float32 2-D views with any strides, out C-contiguous float32.
    """
def gemm_prepacked_b(a: numpy.ndarray, b: numpy.ndarray, out: numpy.ndarray, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.ndarray:
    """
    out = alpha * a @ b + beta * out with b packed whole first (pack_b_whole, then sgemm_prepacked_b): the path the recurrent op takes; for tests.
    """
def gemm_sparse_calls() -> int:
    """
    How many float32 GEMMs have taken the zero-skipping path in this process.
    """
def gemm_sparse_mode() -> int:
    """
    The zero-skipping path's mode (see set_gemm_sparse).
    """
def gemm_threads(m: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    How many threads a GEMM of this size would use now.
    """
def first_non_finite(a: numpy.ndarray) -> int:
    """
    Flat index of the first NaN or infinity in a C-contiguous float32 array, or -1 when every value is finite (one pass, no temporary; fit's input check).
    """
def get_num_threads() -> int:
    ...
def initializer_fill(name: str, shape: typing.Any, seed: typing.SupportsInt | typing.SupportsIndex, params: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    A new float32 array of `shape` filled by the named initializer from `seed`.
    """
def initializer_names() -> list[str]:
    ...
def kernel_info() -> dict:
    ...
def l1_l2_penalty(w: numpy.ndarray, g: numpy.ndarray | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> float:
    """
    Returns l1*sum|w| + l2*sum w^2 and adds its gradient l1*sign(w) + 2*l2*w to g (in place) when g is given.
    """
def loss_config(kind: str, params: typing.Any = None) -> dict:
    """
    The parameters of loss `kind` (from_logits for the cross-entropies, delta for huber): the table's defaults overridden by the dict `params`, checked against the table.
    """
def loss_descriptors() -> list:
    """
    The loss table: one dict per kind with its Keras name and class name, engine kind, aliases, target ('dense', 'labels' or 'none'), whether it takes logits, whether the engine counts accuracy for it, whether it is internal (not a compile() name), and its constructor parameters (name, type, default, valid range).
    """
def loss_names() -> list[str]:
    """
    Every loss kind the engine knows, internal ones (mean_of_output) included.
    """
def loss_value_grad(kind_name: str, pred: numpy.ndarray, target_or_labels: typing.Any = None, sample_weight: typing.Any = None, from_logits: bool = False, delta: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> tuple[float, numpy.typing.NDArray[numpy.float32]]:
    """
    (loss, grad) of a Keras loss with 'sum_over_batch_size' reduction. pred (n, c) float32 probabilities or logits; target (n, c) float32, or int32 labels (n,) for sparse_categorical_crossentropy, not read (may be None) for mean_of_output; sample_weight (n,) float32 or None. grad is d loss / d pred.
    """
def measure_fma_peak(iters: typing.SupportsInt | typing.SupportsIndex = 20000000) -> float:
    ...
def optimizer_apply(kind: str, config: typing.Any, t: typing.SupportsInt | typing.SupportsIndex, params: list, grads: list, slots: list, u_product: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> float:
    """
    One whole Keras step over lists of parameters (clipping included); returns the new u_product to pass at the next step.
    """
def optimizer_begin_step(kind: str, config: typing.Any, t: typing.SupportsInt | typing.SupportsIndex, u_product: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> float:
    """
    Advances the optimizer's scalar state to step t (Nadam's momentum product) and returns it; call once per step before optimizer_update.
    """
def optimizer_config(kind: str, config: typing.Any = None) -> dict:
    """
    The full, validated configuration of optimizer `kind`: Keras defaults overridden by `config`.
    """
def optimizer_descriptors() -> list:
    """
    The optimizer table: one dict per optimizer with its Keras name, class name, engine kind, and its arguments in Keras constructor order (name, type, default, valid range, whether None turns it off, whether the constructor names it or takes it through **kwargs), plus the groups of arguments of which at most one may be set.
    """
def optimizer_slot_names(kind: str, config: typing.Any = None) -> list[str]:
    """
    Names of the per-parameter slot arrays, in the order optimizer_update takes them.
    """
def optimizer_slots(kind: str, config: typing.Any, shape: typing.Any) -> list:
    """
    Freshly initialised slot arrays for a parameter of the given shape.
    """
def optimizer_update(kind: str, config: typing.Any, t: typing.SupportsInt | typing.SupportsIndex, param: numpy.ndarray, grad: numpy.ndarray, slots: list, u_product: typing.SupportsFloat | typing.SupportsIndex = 1.0, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
    """
    Fused update of one parameter in place (t is the 1-based step; u_product is what optimizer_begin_step returned for t). The gradient is multiplied by grad_scale, then clipped to clipvalue; weight decay is applied first.
    """
def pool_info() -> dict:
    """
    The worker pool of this process: the pid it was made in (0: none yet), worker threads started, regions run on it and on the caller alone, tasks run by workers, and how many fork()s this process descends from since the core was loaded.
    """
def prelu_backward(x: numpy.ndarray, alpha: numpy.ndarray, dy: numpy.ndarray) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    (dx, dalpha) of PReLU: dx = dy * (x > 0 ? 1 : alpha), dalpha = column sums of dy * min(x, 0).
    """
def prelu_forward(x: numpy.ndarray, alpha: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
    """
    PReLU of x (n, c) with one slope per channel: x if x > 0 else alpha * x.
    """
def rrelu_backward(slope: numpy.ndarray, dy: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
    """
    dx = dy * slope (slope as returned by rrelu_forward).
    """
def rrelu_forward(x: numpy.ndarray, lower: typing.SupportsFloat | typing.SupportsIndex = 0.125, upper: typing.SupportsFloat | typing.SupportsIndex = 0.3333333432674408, training: bool = True, seed: typing.SupportsInt | typing.SupportsIndex = 0, stream: typing.SupportsInt | typing.SupportsIndex = 0, offset: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    (y, slope) of RReLU. Training: slope ~ U(lower, upper) per negative element, from the counter-based generator; inference: slope (lower + upper) / 2.
    """
def sbgemm(a: numpy.ndarray, b: numpy.ndarray, out: numpy.ndarray, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, bias: numpy.ndarray | None = None, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.ndarray:
    """
    out = bf16(a) @ bf16(b) + beta * out + bias, summed in float32; a, b float32 2-D views with any strides, out C-contiguous float32.
    """
def sbgemm_info() -> dict:
    """
    The bf16 GEMM's kernel and blocksizes (arch: what cpuid/PYNN_ARCH asked for; kernel: what runs, which differs when Linux refuses AMX; row_kernel: whether a one-row bf16 predict reads the weights in place, gemm/sbgemv.h, instead of packing them; row_kernel_max_rows: the most rows a predict takes there; row_kernel_calls[r - 1]: how many r-row blocks of a layer it has run in this process).
    """
def sbgemm_prepacked_b(a: numpy.ndarray, b: numpy.ndarray, out: numpy.ndarray, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, bias: numpy.ndarray | None = None, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.ndarray:
    """
    sbgemm with b rounded and packed whole first (sb_pack_b_whole, then sbgemm_prepacked_b): the path the bf16 recurrent layers take; for tests.
    """
def set_gemm_sparse(mode: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    The float32 GEMM's zero-skipping path: 1 whenever B allows it, 0 never, -1 when the probe finds A zero-heavy (the default; PYNN_GEMM_SPARSE sets the initial mode). For tests and benchmarks: the result is bitwise the same either way when B is finite.
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def softmax_backward(y: numpy.ndarray, dy: numpy.ndarray, dz: numpy.ndarray) -> numpy.ndarray:
    """
    dz = y * (dy - <dy, y>) row by row, y the softmax output; dz may be dy.
    """
def softmax_forward(x: numpy.ndarray) -> numpy.ndarray:
    """
    Row-wise softmax of a C-contiguous float32 (n, c) array, in place.
    """
def sum_of_squares(g: numpy.ndarray) -> float:
    """
    Sum of squares of a float32 array, accumulated in double in a fixed order.
    """
