//! A thin typed layer over burn's autodiff backend on its CPU backend: `Autodiff<Flex>`, driven
//! through the backend's primitive float ops (the workspace's burn `Tensor` dispatches to the
//! inference backends and is built without autodiff). Shapes are tracked here, not read back.

use burn_autodiff::Autodiff;
use burn_backend::ops::FloatTensorOps;
use burn_backend::tensor::FloatTensor;
use burn_backend::{AutodiffBackend, Scalar, Shape, Slice, TensorData};
use burn_flex::{Flex, FlexDevice};

use crate::{Error, Result};

/// The training backend.
pub(crate) type Ad = Autodiff<Flex>;

/// A float tensor of the training graph with its shape.
#[derive(Clone)]
pub(crate) struct T {
    pub t: FloatTensor<Ad>,
    pub shape: Vec<usize>,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// The values of a tensor of the inner backend.
pub(crate) fn inner_values(t: FloatTensor<Flex>) -> Result<Vec<f32>> {
    let data = block_on(<Flex as FloatTensorOps<Flex>>::float_into_data(t))
        .map_err(|e| Error::Backend { reason: format!("reading a tensor: {e:?}") })?;
    data.try_into_vec::<f32>().map_err(|e| Error::Backend { reason: format!("reading a tensor: {e:?}") })
}

/// A constant of the inner backend (frozen weights: kept once, wrapped per pass).
pub(crate) fn inner(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Flex> {
    <Flex as FloatTensorOps<Flex>>::float_from_data(TensorData::new(values, Shape::from(shape.to_vec())), &FlexDevice)
}

impl T {
    /// A constant (no gradient).
    pub fn constant(values: Vec<f32>, shape: &[usize]) -> Self {
        Self {
            t: Ad::float_from_data(TensorData::new(values, Shape::from(shape.to_vec())), &FlexDevice),
            shape: shape.to_vec(),
        }
    }

    /// A constant wrapping a tensor of the inner backend (shared, not copied).
    pub fn wrap(t: &FloatTensor<Flex>, shape: &[usize]) -> Self {
        Self { t: <Ad as AutodiffBackend>::from_inner(t.clone()), shape: shape.to_vec() }
    }

    /// A leaf whose gradient is tracked.
    pub fn param(values: Vec<f32>, shape: &[usize]) -> Self {
        let t = Ad::float_from_data(TensorData::new(values, Shape::from(shape.to_vec())), &FlexDevice);
        Self { t: Ad::float_set_require_grad(t, true), shape: shape.to_vec() }
    }

    fn same(self, t: impl FnOnce(FloatTensor<Ad>) -> FloatTensor<Ad>) -> Self {
        let shape = self.shape;
        Self { t: t(self.t), shape }
    }

    /// Broadcasts `other` to this tensor's shape (explicitly: autodiff sums the gradient back).
    fn bcast(&self, other: T) -> FloatTensor<Ad> {
        if other.shape == self.shape {
            return other.t;
        }
        let mut s = other.shape.clone();
        while s.len() < self.shape.len() {
            s.insert(0, 1);
        }
        let t = if s != other.shape { Ad::float_reshape(other.t, Shape::from(s)) } else { other.t };
        Ad::float_expand(t, Shape::from(self.shape.clone()))
    }

    pub fn add(self, o: T) -> T {
        let o = self.bcast(o);
        self.same(|a| Ad::float_add(a, o))
    }
    pub fn sub(self, o: T) -> T {
        let o = self.bcast(o);
        self.same(|a| Ad::float_sub(a, o))
    }
    pub fn mul(self, o: T) -> T {
        let o = self.bcast(o);
        self.same(|a| Ad::float_mul(a, o))
    }
    pub fn div(self, o: T) -> T {
        let o = self.bcast(o);
        self.same(|a| Ad::float_div(a, o))
    }
    pub fn scale(self, k: f32) -> T {
        self.same(|a| Ad::float_mul_scalar(a, Scalar::from(k)))
    }
    pub fn add_scalar(self, k: f32) -> T {
        self.same(|a| Ad::float_add_scalar(a, Scalar::from(k)))
    }
    pub fn exp(self) -> T {
        self.same(Ad::float_exp)
    }
    pub fn log(self) -> T {
        self.same(Ad::float_log)
    }
    pub fn tanh(self) -> T {
        self.same(Ad::float_tanh)
    }
    pub fn sqrt(self) -> T {
        self.same(Ad::float_sqrt)
    }
    pub fn detach(self) -> T {
        self.same(Ad::float_detach)
    }

    /// Sum over the last dimension, kept as size 1.
    pub fn sum_last(self) -> T {
        let d = self.shape.len() - 1;
        let mut s = self.shape.clone();
        s[d] = 1;
        let t = Ad::float_sum_dim(self.t, d);
        Self { t, shape: s }
    }

    /// Mean over the last dimension, kept as size 1.
    pub fn mean_last(self) -> T {
        let d = self.shape.len() - 1;
        let mut s = self.shape.clone();
        s[d] = 1;
        let t = Ad::float_mean_dim(self.t, d);
        Self { t, shape: s }
    }

    /// Max over the last dimension, kept as size 1.
    pub fn max_last(self) -> T {
        let d = self.shape.len() - 1;
        let mut s = self.shape.clone();
        s[d] = 1;
        let t = Ad::float_max_dim(self.t, d);
        Self { t, shape: s }
    }

    /// Sum of all values, shape `[1]`.
    pub fn sum(self) -> T {
        let t = Ad::float_sum(self.t);
        Self { t, shape: vec![1] }
    }

    pub fn reshape(self, shape: &[usize]) -> T {
        debug_assert_eq!(self.shape.iter().product::<usize>(), shape.iter().product::<usize>());
        let t = Ad::float_reshape(self.t, Shape::from(shape.to_vec()));
        Self { t, shape: shape.to_vec() }
    }

    pub fn swap(self, a: usize, b: usize) -> T {
        let mut s = self.shape.clone();
        s.swap(a, b);
        let t = Ad::float_swap_dims(self.t, a, b);
        Self { t, shape: s }
    }

    /// Batched matmul over the last two dimensions.
    pub fn matmul(self, o: T) -> T {
        let mut s = self.shape.clone();
        let last = s.len() - 1;
        s[last] = o.shape[o.shape.len() - 1];
        let t = Ad::float_matmul(self.t, o.t);
        Self { t, shape: s }
    }

    /// `self[.., range]` on the last dimension.
    pub fn slice_last(self, r: std::ops::Range<usize>) -> T {
        let nd = self.shape.len();
        let mut sl: Vec<Slice> = self.shape.iter().map(|&d| Slice::from(0..d)).collect();
        sl[nd - 1] = Slice::from(r.clone());
        let mut s = self.shape.clone();
        s[nd - 1] = r.len();
        let t = Ad::float_slice(self.t, &sl);
        Self { t, shape: s }
    }

    /// `self[range, ..]` on the first dimension.
    pub fn slice_first(self, r: std::ops::Range<usize>) -> T {
        let mut sl: Vec<Slice> = self.shape.iter().map(|&d| Slice::from(0..d)).collect();
        sl[0] = Slice::from(r.clone());
        let mut s = self.shape.clone();
        s[0] = r.len();
        let t = Ad::float_slice(self.t, &sl);
        Self { t, shape: s }
    }

    /// Concatenation along `dim`.
    pub fn cat(ts: Vec<T>, dim: usize) -> T {
        let mut s = ts[0].shape.clone();
        s[dim] = ts.iter().map(|t| t.shape[dim]).sum();
        let t = Ad::float_cat(ts.into_iter().map(|t| t.t).collect(), dim);
        T { t, shape: s }
    }

    /// The values (no gradient).
    pub fn values(&self) -> Result<Vec<f32>> {
        inner_values(<Ad as AutodiffBackend>::inner(self.t.clone()))
    }

    /// Backpropagates from this (scalar) tensor.
    pub fn backward(self) -> <Ad as AutodiffBackend>::Gradients {
        <Ad as AutodiffBackend>::backward(self.t)
    }

    /// The gradient of this leaf in `grads` (zeros when it did not take part).
    pub fn grad(&self, grads: &<Ad as AutodiffBackend>::Gradients) -> Result<Vec<f32>> {
        match <Ad as AutodiffBackend>::grad(&self.t, grads) {
            Some(g) => inner_values(g),
            None => Ok(vec![0.0; self.shape.iter().product()]),
        }
    }
}
