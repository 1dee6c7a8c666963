"""maskfeat: MaskFeat (masked HOG feature prediction) pre-training and evaluation on PyTorch."""
__version__ = "0.1.0"
