from .file_index import FileIndex
from .folder_scan import scan_folder
from .images import decode_rgb, skimage_photos
from .list_file import read_list_file
from .loader import build_loader, build_pretrain_dataset, build_pretrain_loader
from .pretrain_dataset import PretrainDataset, pretrain_transform
from .sampler import EpochSampler

__all__ = ["FileIndex", "decode_rgb", "read_list_file", "scan_folder", "skimage_photos", "build_loader",
           "build_pretrain_dataset", "build_pretrain_loader", "PretrainDataset", "pretrain_transform",
           "EpochSampler"]
