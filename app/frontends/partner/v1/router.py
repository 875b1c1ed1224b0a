"""The partner frontend's endpoints, version 1."""

from fastapi import APIRouter

router = APIRouter()
